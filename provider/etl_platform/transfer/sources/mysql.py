"""MariaDB/MySQL as a source: keyset chunks that the server prints as PostgreSQL CSV lines.

Each chunk is one `SELECT CONCAT_WS(',', <field per column>) ... WHERE key > lo ORDER BY key LIMIT n`
(an index range scan, never an OFFSET). The server formats every value for its destination column
(`mysql_types`), so the client joins ready lines and hands them to COPY: no value is decoded here.
The next chunk is fetched while the current one is written (mysqlclient releases the GIL while it
waits on the server), at most one chunk ahead.

Consistency on InnoDB: one stream reads every chunk inside one `START TRANSACTION WITH CONSISTENT
SNAPSHOT`, so it sees the table as of one instant. MariaDB cannot share a snapshot between sessions;
for N streams over `source_table` the source holds `FLUSH TABLES t WITH READ LOCK` while the N
snapshots start (writers to that table wait for those milliseconds), so all N see the same instant.
Where that lock is not possible (no RELOAD/LOCK TABLES privilege, or `source_sql`, whose tables are
unknown), each stream has its own snapshot, taken one after the other: each key range is consistent
in itself, but a transaction committed between two snapshot starts can be seen in one range and not
in another. The summary's `consistency` says which one a run had. MyISAM, Aria and other engines
without MVCC have no snapshot to give: each chunk reads such a table as it is then, and the summary
says "no snapshot" instead of promising one.

Every source session pins what decides how a value prints: utf8mb4, time_zone UTC, REPEATABLE READ,
autocommit (no catalog look-up leaves a transaction, and its metadata locks, open), and an sql_mode
without NO_BACKSLASH_ESCAPES, ORACLE, EMPTY_STRING_IS_NULL and PAD_CHAR_TO_FULL_LENGTH; the rest of
the session's sql_mode is kept, so source_sql parses as in the user's own client.

Keys: source_table's key_column must be NOT NULL with a unique index of its own (a view has no index:
give it as source_sql). source_sql's key is taken on trust, as with PostgreSQL: a duplicate key at a
chunk boundary loses the rows after the first; a NULL key stops the transfer, naming the chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from etl_platform.transfer import catalog
from etl_platform.transfer.catalog import Column
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.errors import TransferConfigError, TransferError
from etl_platform.transfer.keys import csv_first_field
from etl_platform.transfer.plan import (
    CSV,
    TransferPlan,
    check_write_mode,
    match_columns,
    resolve_destination,
)
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.sources import mysql_catalog
from etl_platform.transfer.sources.base import Buffer, ChunkEnd
from etl_platform.transfer.sources.mysql_types import (
    INTEGER_BITS,
    UTC_SUFFIX,
    MyColumn,
    NoMapping,
    ZeroDates,
    cast_hint,
    field_sql,
    natural_type,
    quote_ident,
)
from etl_platform.transfer.spec import TransferSpec

MySqlConnectionFactory = Callable[[], Any]  # returns a MySQLdb connection

# Every value prints the same whatever the server's or the user's defaults. Autocommit on: a catalog
# look-up must not leave a transaction open (its metadata locks would block DDL, and DROP, for the
# whole transfer); the snapshots are explicit transactions.
SESSION_SETUP = (
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET autocommit = 1",
)
# sql_mode flags that change what the generated SELECT prints: NO_BACKSLASH_ESCAPES turns the '\\x' of a
# bytea into two backslashes (PostgreSQL then reads other bytes), ORACLE makes CONCAT skip NULLs (a NULL
# text arrives as ""), EMPTY_STRING_IS_NULL makes the '' of an empty field NULL (the field vanishes from
# CONCAT_WS), PAD_CHAR_TO_FULL_LENGTH pads CHAR values. The rest of the session's sql_mode is kept, so
# source_sql parses as it would in the user's own client.
UNSAFE_SQL_MODES = frozenset(
    {"NO_BACKSLASH_ESCAPES", "ORACLE", "EMPTY_STRING_IS_NULL", "PAD_CHAR_TO_FULL_LENGTH"}
)
_KEY_KINDS = {
    **dict.fromkeys(INTEGER_BITS, "int"),
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "decimal"),
    **dict.fromkeys(("char", "varchar"), "text"),
    **dict.fromkeys(("date", "datetime", "timestamp"), "datetime"),
}


@dataclass(frozen=True)
class _Query:
    """The pieces of every chunk's SELECT, fixed at plan time."""

    source_from: str
    line: str  # one PostgreSQL CSV line per row, as a binary string (no client-side decoding)
    key: str
    key_kind: str
    where: tuple[str, ...]  # window and key bounds, as escaped literals
    lock_table: str | None  # the table a synchronized multi-stream start may lock
    no_mvcc: str | None  # "db.t (MyISAM)" when the table's engine has no snapshots to give


class MySqlSource:
    def __init__(
        self,
        factory: MySqlConnectionFactory,
        *,
        zero_dates: ZeroDates | str = ZeroDates.ERROR,
        lock_wait_timeout: int = 30,
        label: str = "mysql",
        logger: LoggerLike | None = None,
    ):
        self.factory = factory
        try:
            self.zero_dates = ZeroDates(zero_dates)
        except ValueError:
            raise TransferConfigError(
                f"zero_dates {zero_dates!r} is not one of {[z.value for z in ZeroDates]}."
            ) from None
        self.lock_wait_timeout = lock_wait_timeout
        self.label = label
        self.log = logger
        self._conn: Any = None
        self._query: _Query | None = None
        self._consistency = "one snapshot"

    # -- the Source protocol ------------------------------------------------------------------

    def __enter__(self) -> MySqlSource:
        self._conn = self._open()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            _close(self._conn)
            self._conn = None

    @property
    def consistency(self) -> str:
        return self._consistency

    def plan(self, spec: TransferSpec, destination: psycopg.Connection[Any]) -> TransferPlan:
        dest = resolve_destination(spec, destination)
        lock_table = no_mvcc = None
        if spec.source_table:
            table = mysql_catalog.resolve_table(self._conn, spec.source_table)
            columns, source_from, lock_table = table.columns, table.ident, table.ident
            self.label = table.label
            no_mvcc = None if table.has_snapshots else f"{table.label} ({table.engine})"
            key = _table_key(table, spec.key_column)
        else:
            assert spec.source_sql is not None and spec.key_column
            columns = mysql_catalog.describe_query(self._conn, spec.source_sql)
            source_from = f"({spec.source_sql}) AS src"
            self.label = "source_sql"
            key = _query_key(columns, spec.key_column)
        names = [c.name for c in columns]
        if spec.incremental_column and spec.incremental_column not in names:
            raise TransferConfigError(
                f"incremental_column {spec.incremental_column!r} is not a column of {self.label} "
                f"(columns: {', '.join(names)})."
            )
        ordered = (key, *[c for c in columns if c.name != key.name])
        if spec.transform is None:
            dest_cols = match_columns(spec, tuple(Column(c.name, 0, c.type) for c in ordered), dest)
            fields, source_columns = self._fields(destination, ordered, dest_cols, dest.label)
        else:
            dest_cols = ()
            natural = tuple(Column(c.name, *natural_type(c)) for c in ordered)
            fields, source_columns = self._fields(destination, ordered, natural, dest.label)
        conflict = check_write_mode(spec, destination, dest, names)
        self._query = _Query(
            source_from=source_from,
            line=f"CAST(CONCAT_WS(',', {', '.join(fields)}) AS BINARY)",
            key=quote_ident(key.name),
            key_kind=_KEY_KINDS[key.base],
            where=self._where(spec),
            lock_table=lock_table,
            no_mvcc=no_mvcc,
        )
        return TransferPlan(
            spec=spec,
            source_from=None,
            source_relation=None,
            source_columns=source_columns,
            key=source_columns[0],
            destination=dest,
            dest_columns=dest_cols,
            copy_format=CSV,
            conflict_columns=conflict,
        )

    def parts(self, plan: TransferPlan, parallelism: int) -> list[PartState]:
        if parallelism == 1:
            return [PartState(part=0, lo=None, hi=None)]
        bounds = self._split_points(parallelism)
        edges: list[str | None] = [None, *sorted(set(bounds), key=bounds.index), None]
        return [PartState(part=i, lo=edges[i], hi=edges[i + 1]) for i in range(len(edges) - 1)]

    def estimate_rows(self, plan: TransferPlan) -> int:
        q = self._q
        return mysql_catalog.estimate_rows(self._conn, f"SELECT 1 FROM {q.source_from} WHERE {_and(q.where)}")

    @contextmanager
    def readers(self, plan: TransferPlan, parts: list[PartState]) -> Iterator[list[MySqlChunkReader]]:
        conns: list[Any] = []
        readers: list[MySqlChunkReader] = []
        try:
            for _ in parts:  # one at a time: if the third fails, the first two are still closed
                conns.append(self._open())
            self._start_snapshots(conns)
            readers = [MySqlChunkReader(c, self._q, self.label) for c in conns]
            yield readers
        finally:
            for reader in readers:
                reader.close()
            for conn in conns:
                _close(conn)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _q(self) -> _Query:
        assert self._query is not None, "plan() first"
        return self._query

    def _open(self) -> Any:
        try:
            conn = self.factory()
        except TransferError:
            raise  # a factory that already says what failed (EtlMySqlHook's)
        except Exception as exc:
            # The driver's message names the host and never the password; nothing else is added.
            raise TransferError(
                f"connecting to the MariaDB/MySQL source {self.label} failed: {exc}"
            ) from None
        try:
            with conn.cursor() as cur:
                for statement in SESSION_SETUP:
                    cur.execute(statement)
                cur.execute("SELECT @@SESSION.sql_mode")
                modes = _text(cur.fetchone()[0]).split(",")
                if UNSAFE_SQL_MODES.intersection(modes):
                    kept = ",".join(m for m in modes if m and m not in UNSAFE_SQL_MODES)
                    cur.execute("SET SESSION sql_mode = %s", (kept,))
        except BaseException:
            _close(conn)
            raise
        return conn

    def _fields(
        self,
        destination: psycopg.Connection[Any],
        ordered: tuple[MyColumn, ...],
        targets: tuple[Column, ...],
        dest_label: str,
    ) -> tuple[list[str], tuple[Column, ...]]:
        infos = catalog.type_infos(destination, [t.type_oid for t in targets])
        destination.commit()
        fields: list[str] = []
        refused: list[tuple[MyColumn, Column, str]] = []
        for col, target in zip(ordered, targets, strict=True):
            try:
                fields.append(field_sql(col, target, infos.get(target.type_oid), self.zero_dates))
            except NoMapping as why:
                refused.append((col, target, str(why)))
        if refused:
            raise TransferConfigError(_refusal(self.label, dest_label, refused))
        return fields, tuple(
            Column(c.name, t.type_oid, c.type) for c, t in zip(ordered, targets, strict=True)
        )

    def _where(self, spec: TransferSpec) -> tuple[str, ...]:
        literal = self._conn.literal
        parts = []
        if spec.incremental_column:
            col = quote_ident(spec.incremental_column)
            if spec.window_start is not None:
                parts.append(f"{col} >= {_text(literal(_window_value(spec.window_start)))}")
            if spec.window_end is not None:
                parts.append(f"{col} < {_text(literal(_window_value(spec.window_end)))}")
        return tuple(parts)

    def _split_points(self, parallelism: int) -> list[str]:
        q = self._q
        where = _and(q.where)
        with self._conn.cursor() as cur:
            if q.key_kind == "int":
                cur.execute(f"SELECT MIN({q.key}), MAX({q.key}) FROM {q.source_from} WHERE {where}")
                low, high = cur.fetchone()
                if low is None:
                    return []
                step = (int(high) - int(low)) / parallelism
                return [str(int(low) + int(step * i)) for i in range(1, parallelism)]
            cur.execute(f"SELECT COUNT(*) FROM {q.source_from} WHERE {where}")
            total = int(cur.fetchone()[0])
            points = []
            for i in range(1, parallelism):
                cur.execute(
                    f"SELECT {q.key} FROM {q.source_from} WHERE {where} ORDER BY {q.key} "
                    f"LIMIT 1 OFFSET {total * i // parallelism}"
                )
                row = cur.fetchone()
                if row is not None:
                    points.append(str(row[0]))
            return points

    def _start_snapshots(self, conns: list[Any]) -> None:
        started = time.perf_counter()
        if self._q.no_mvcc is not None:
            # Nothing to synchronise: the transactions below hold no view of such a table.
            for conn in conns:
                _begin_snapshot(conn)
            self._consistency = (
                f"no snapshot: {self._q.no_mvcc} has no MVCC, each chunk reads the table as it is then "
                "(a write during the transfer can show in part)"
            )
            if self.log is not None:
                self.log.warning("%s: %s", self.label, self._consistency)
            return
        if len(conns) == 1:
            _begin_snapshot(conns[0])
            self._consistency = "one snapshot"
            return
        table = self._q.lock_table
        if table is not None and self._locked_start(table, conns):
            held = (time.perf_counter() - started) * 1000
            self._consistency = (
                f"one snapshot instant for {len(conns)} streams (writes to {table} held {held:.0f} ms)"
            )
            return
        for conn in conns:
            _begin_snapshot(conn)
        spread = (time.perf_counter() - started) * 1000
        self._consistency = (
            f"{len(conns)} snapshots, one per stream, started within {spread:.0f} ms: each key range is "
            "consistent, a transaction committed between two starts may show in one range only"
        )
        if self.log is not None:
            self.log.warning("%s: %s", self.label, self._consistency)

    def _locked_start(self, table: str, conns: list[Any]) -> bool:
        with self._conn.cursor() as cur:
            try:
                cur.execute(f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout)}")
                cur.execute(f"FLUSH TABLES {table} WITH READ LOCK")
            except Exception as exc:
                if self.log is not None:
                    self.log.warning(
                        "%s: could not hold writes while %d snapshots start (%s); each stream takes its own",
                        self.label,
                        len(conns),
                        exc,
                    )
                return False
            try:
                for conn in conns:
                    _begin_snapshot(conn)
            finally:
                cur.execute("UNLOCK TABLES")
        return True


class MySqlChunkReader:
    def __init__(self, conn: Any, query: _Query, label: str):
        self.conn = conn
        self.query = query
        self.label = label
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-mysql-read")
        self._ahead: tuple[tuple[str | None, str | None, int], Future[list[Any]]] | None = None

    def read(self, lo: str | None, hi: str | None, limit: int) -> MySqlChunk:
        wanted = (lo, hi, limit)
        if self._ahead is not None and self._ahead[0] == wanted:
            future = self._ahead[1]
        else:
            if self._ahead is not None:
                with suppress(Exception):  # a chunk no longer wanted: its error is not this read's
                    self._ahead[1].result()  # one statement at a time on the connection
            future = self._pool.submit(self._fetch, lo, hi, limit)
        self._ahead = None
        return MySqlChunk(self, future, lo, hi, limit)

    def prefetch(self, lo: str | None, hi: str | None, limit: int) -> None:
        self._ahead = ((lo, hi, limit), self._pool.submit(self._fetch, lo, hi, limit))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, lo: str | None, hi: str | None, limit: int) -> list[Any]:
        q = self.query
        conds = list(q.where)
        if lo is not None:
            conds.append(f"{q.key} > {self._key_literal(lo)}")
        if hi is not None:
            conds.append(f"{q.key} <= {self._key_literal(hi)}")
        statement = f"SELECT {q.line} FROM {q.source_from} WHERE {_and(tuple(conds))} ORDER BY {q.key} LIMIT {int(limit)}"
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        except Exception as exc:
            raise TransferError(
                f"reading {self.label} with {q.key} in ({lo if lo is not None else '-inf'}, "
                f"{hi if hi is not None else '+inf'}] failed: {exc}"
            ) from None

    def _key_literal(self, text: str) -> str:
        kind = self.query.key_kind
        if kind == "datetime":  # printed for a timestamptz with its zone; MariaDB compares it naive
            text = text.removesuffix(UTC_SUFFIX)
        value: Any = int(text) if kind == "int" else Decimal(text) if kind == "decimal" else text
        return _text(self.conn.literal(value))


class MySqlChunk:
    def __init__(
        self, reader: MySqlChunkReader, future: Future[list[Any]], lo: str | None, hi: str | None, limit: int
    ):
        self.reader = reader
        self.future = future
        self.lo, self.hi, self.limit = lo, hi, limit
        self._end: ChunkEnd | None = None

    def blocks(self) -> Iterator[Buffer]:
        rows = self.future.result()
        try:
            last_key = csv_first_field(rows[-1][0]) if rows else None
        except ValueError:  # source_sql's key is the user's word: NULL shows up only here
            raise TransferError(
                f"{self.reader.label} returned a NULL {self.reader.query.key} after "
                f"{self.lo if self.lo is not None else '-inf'}: key_column must be NOT NULL and unique."
            ) from None
        self._end = ChunkEnd(len(rows), last_key, len(rows) < self.limit)
        if not self._end.exhausted:
            self.reader.prefetch(last_key, self.hi, self.limit)
        if not rows:
            return
        try:
            data = b"\n".join([r[0] for r in rows])
        except TypeError:
            raise TransferError(
                f"a row of {self.reader.label} with {self.where(self.lo)} is longer than the server's "
                "max_allowed_packet (its CSV line came back NULL); raise max_allowed_packet or leave the "
                "widest column out of source_sql."
            ) from None
        del rows
        yield data
        yield b"\n"

    def end(self) -> ChunkEnd:
        assert self._end is not None, "read the blocks first"
        return self._end

    def where(self, lo: str | None) -> str:
        last = self._end.last_key if self._end is not None else "?"
        return f"{self.reader.query.key.strip('`')} in ({lo if lo is not None else '-inf'}, {last}]"


def _refusal(label: str, dest_label: str, refused: list[tuple[MyColumn, Column, str]]) -> str:
    """Names each refused column with both types and why, and a source_sql that would map."""
    listed = "; ".join(f"{c.name!r} {c.type} -> {t.type_name}: {why}" for c, t, why in refused)
    casts = ", ".join(f"{cast_hint(c, t)} AS {quote_ident(c.name)}" for c, t, _ in refused)
    wider = []
    for col, _, _ in refused:
        with suppress(NoMapping):
            wider.append(f"{col.name} to {natural_type(col)[1]}")
    source = "" if label == "source_sql" else f" FROM {label}"
    holds = f" ({', '.join(wider)})" if wider else ""
    return (
        f"{label} has columns with no exact mapping into {dest_label}: {listed}. Cast them in source_sql "
        f"(for example SELECT {casts}, ...{source}; MariaDB's CAST rounds, clips or wraps a value that "
        f"does not fit, with only a warning) or change the destination column{holds}."
    )


def _table_key(table: mysql_catalog.MyTable, key_column: str | None) -> MyColumn:
    if table.is_view:
        raise TransferConfigError(
            f"source_table {table.label} is a view: it has no index to show a key is unique. Give it as "
            f"source_sql (SELECT ... FROM {table.label}) with a key_column that is unique in it."
        )
    if key_column is None:
        if len(table.primary_key) != 1:
            what = (
                "no primary key"
                if not table.primary_key
                else f"a composite primary key {list(table.primary_key)}"
            )
            raise TransferConfigError(f"source_table {table.label} has {what}: set key_column.")
        key_column = table.primary_key[0]
    column = table.column(key_column)
    if column is None:
        raise TransferConfigError(
            f"key_column {key_column!r} is not a column of {table.label} "
            f"(columns: {', '.join(c.name for c in table.columns)})."
        )
    if key_column not in table.unique_keys and table.primary_key != (key_column,):
        raise TransferConfigError(
            f"key_column {key_column!r} of {table.label} has no unique index of its own: chunks need an "
            "ordered unique key (give the primary key or a uniquely indexed column)."
        )
    if column.nullable:
        # A unique index admits any number of NULLs, and `key > last` never returns them again.
        raise TransferConfigError(
            f"key_column {key_column!r} of {table.label} can be NULL: a unique index allows many NULL "
            "keys, which keyset chunks cannot order. Make it NOT NULL or give the primary key."
        )
    return _keyable(column, table.label)


def _query_key(columns: tuple[MyColumn, ...], key_column: str) -> MyColumn:
    column = next((c for c in columns if c.name == key_column), None)
    if column is None:
        raise TransferConfigError(
            f"key_column {key_column!r} is not an output column of source_sql "
            f"(columns: {', '.join(c.name for c in columns)})."
        )
    return _keyable(column, "source_sql")


def _keyable(column: MyColumn, label: str) -> MyColumn:
    if column.base not in _KEY_KINDS:
        raise TransferConfigError(
            f"key_column {column.name!r} of {label} is a {column.type}: chunk keys must be integers, "
            "decimals, strings or dates."
        )
    return column


def _window_value(value: Any) -> Any:
    """Airflow renders data intervals as ISO strings with a zone; DATETIME compares naive UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date | int):
        return value
    return value


def _and(conds: tuple[str, ...]) -> str:
    return " AND ".join(conds) if conds else "TRUE"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _begin_snapshot(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


def _close(conn: Any) -> None:
    """Roll back first: an open transaction holds metadata locks (a DROP would wait on it)."""
    with suppress(Exception):
        conn.rollback()
    with suppress(Exception):
        conn.close()

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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from etl_platform.transfer import catalog
from etl_platform.transfer.catalog import Column
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.plan import (
    CSV,
    TransferPlan,
    check_write_mode,
    match_columns,
    resolve_destination,
)
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.sources import mysql_catalog
from etl_platform.transfer.sources.mysql_checks import KEY_KINDS, query_key, refusal, table_key
from etl_platform.transfer.sources.mysql_read import MySqlChunkReader, Query, and_, window_value
from etl_platform.transfer.sources.mysql_session import (
    SESSION_SETUP,
    UNSAFE_SQL_MODES,
    MySqlConnectionFactory,
    SnapshotStart,
    close,
    open_session,
    text,
)
from etl_platform.transfer.sources.mysql_types import (
    MyColumn,
    NoMapping,
    ZeroDates,
    field_sql,
    natural_type,
    quote_ident,
)
from etl_platform.transfer.spec import TransferSpec

# Still importable from here, where they were first defined.
__all__ = [
    "SESSION_SETUP",
    "UNSAFE_SQL_MODES",
    "MySqlChunkReader",
    "MySqlConnectionFactory",
    "MySqlSource",
]


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
        self._query: Query | None = None
        self._consistency = "one snapshot"

    # -- the Source protocol ------------------------------------------------------------------

    def __enter__(self) -> MySqlSource:
        self._conn = self._open()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            close(self._conn)
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
            key = table_key(table, spec.key_column)
        else:
            assert spec.source_sql is not None and spec.key_column
            columns = mysql_catalog.describe_query(self._conn, spec.source_sql)
            source_from = f"({spec.source_sql}) AS src"
            self.label = "source_sql"
            key = query_key(columns, spec.key_column)
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
        self._query = Query(
            source_from=source_from,
            line=f"CAST(CONCAT_WS(',', {', '.join(fields)}) AS BINARY)",
            key=quote_ident(key.name),
            key_kind=KEY_KINDS[key.base],
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
        return mysql_catalog.estimate_rows(self._conn, f"SELECT 1 FROM {q.source_from} WHERE {and_(q.where)}")

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
                close(conn)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _q(self) -> Query:
        assert self._query is not None, "plan() first"
        return self._query

    def _open(self) -> Any:
        return open_session(self.factory, self.label)

    def _start_snapshots(self, conns: list[Any]) -> None:
        starter = SnapshotStart(self._conn, self.label, self.lock_wait_timeout, self.log)
        self._consistency = starter.start(conns, lock_table=self._q.lock_table, no_mvcc=self._q.no_mvcc)

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
            raise TransferConfigError(refusal(self.label, dest_label, refused))
        return fields, tuple(
            Column(c.name, t.type_oid, c.type) for c, t in zip(ordered, targets, strict=True)
        )

    def _where(self, spec: TransferSpec) -> tuple[str, ...]:
        literal = self._conn.literal
        parts = []
        if spec.incremental_column:
            col = quote_ident(spec.incremental_column)
            if spec.window_start is not None:
                parts.append(f"{col} >= {text(literal(window_value(spec.window_start)))}")
            if spec.window_end is not None:
                parts.append(f"{col} < {text(literal(window_value(spec.window_end)))}")
        return tuple(parts)

    def _split_points(self, parallelism: int) -> list[str]:
        q = self._q
        where = and_(q.where)
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

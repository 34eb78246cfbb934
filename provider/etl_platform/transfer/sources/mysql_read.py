"""Reading a MariaDB/MySQL source in keyset chunks, each printed by the server as PostgreSQL CSV lines.

The next chunk is fetched while the current one is written (mysqlclient releases the GIL while it
waits on the server), at most one chunk ahead.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.keys import csv_first_field
from etl_platform.transfer.sources.base import Buffer, ChunkEnd
from etl_platform.transfer.sources.mysql_session import text
from etl_platform.transfer.sources.mysql_types import UTC_SUFFIX


@dataclass(frozen=True)
class Query:
    """The pieces of every chunk's SELECT, fixed at plan time."""

    source_from: str
    line: str  # one PostgreSQL CSV line per row, as a binary string (no client-side decoding)
    key: str
    key_kind: str
    where: tuple[str, ...]  # window and key bounds, as escaped literals
    lock_table: str | None  # the table a synchronized multi-stream start may lock
    no_mvcc: str | None  # "db.t (MyISAM)" when the table's engine has no snapshots to give


class MySqlChunkReader:
    def __init__(self, conn: Any, query: Query, label: str):
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
        statement = f"SELECT {q.line} FROM {q.source_from} WHERE {and_(tuple(conds))} ORDER BY {q.key} LIMIT {int(limit)}"
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        except Exception as exc:
            raise TransferError(
                f"reading {self.label} with {q.key} in ({lo if lo is not None else '-inf'}, "
                f"{hi if hi is not None else '+inf'}] failed: {exc}"
            ) from None

    def _key_literal(self, key: str) -> str:
        kind = self.query.key_kind
        if kind == "datetime":  # printed for a timestamptz with its zone; MariaDB compares it naive
            key = key.removesuffix(UTC_SUFFIX)
        value: Any = int(key) if kind == "int" else Decimal(key) if kind == "decimal" else key
        return text(self.conn.literal(value))


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


def window_value(value: Any) -> Any:
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


def and_(conds: tuple[str, ...]) -> str:
    return " AND ".join(conds) if conds else "TRUE"

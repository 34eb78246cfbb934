"""PostgreSQL as a source: keyset chunks read with COPY TO STDOUT and forwarded undecoded.

Pass-through chunks stay raw COPY blocks (binary when the column types match); only the first field
of a chunk's last row is parsed, for the checkpoint. Parallel readers share one exported snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from etl_platform.transfer import catalog, ranges
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.copy_out import CopyTail, copy_out_blocks
from etl_platform.transfer.keys import BINARY_TRAILER, KeyReader
from etl_platform.transfer.plan import BINARY, TransferPlan, build_plan
from etl_platform.transfer.session import ConnectionFactory, connect_pinned
from etl_platform.transfer.sources.base import BLOCK_SIZE, Buffer, ChunkEnd
from etl_platform.transfer.spec import TransferSpec


class PostgresSource:
    def __init__(self, factory: ConnectionFactory, label: str = "postgres"):
        self.factory = factory
        self.label = label
        self._conn: psycopg.Connection[Any] | None = None
        self._consistency = "one snapshot"

    def __enter__(self) -> PostgresSource:
        self._conn = connect_pinned(self.factory)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        assert self._conn is not None, "use the source as a context manager"
        return self._conn

    def plan(self, spec: TransferSpec, destination: psycopg.Connection[Any]) -> TransferPlan:
        plan = build_plan(spec, self.conn, destination)
        self.conn.commit()
        self.label = spec.source_label
        return plan

    def parts(self, plan: TransferPlan, parallelism: int) -> list[PartState]:
        return ranges.plan_parts(self.conn, plan, parallelism)

    def estimate_rows(self, plan: TransferPlan) -> int:
        estimate = catalog.estimate_rows(self.conn, plan.count_query())
        self.conn.commit()
        return estimate

    @property
    def consistency(self) -> str:
        return self._consistency

    @contextmanager
    def readers(self, plan: TransferPlan, parts: list[PartState]) -> Iterator[list[PgChunkReader]]:
        """Every reader on one REPEATABLE READ snapshot: the control connection exports it."""
        ctl = self.conn
        ctl.isolation_level = IsolationLevel.REPEATABLE_READ
        ctl.read_only = True
        try:
            if len(parts) == 1:
                ctl.execute("SELECT 1")  # opens the snapshot's transaction; chunks are read through libpq
                self._consistency = "one snapshot"
                yield [PgChunkReader(ctl, plan)]
                return
            snapshot = ctl.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            self._consistency = f"one snapshot shared by {len(parts)} streams"
            with ExitStack() as stack:
                readers = []
                for _ in parts:
                    conn = stack.enter_context(connect_pinned(self.factory))
                    conn.isolation_level = IsolationLevel.REPEATABLE_READ
                    conn.read_only = True
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                    readers.append(PgChunkReader(conn, plan))
                yield readers
        finally:
            ctl.rollback()
            ctl.isolation_level = None
            ctl.read_only = None


class PgChunkReader:
    def __init__(self, conn: psycopg.Connection[Any], plan: TransferPlan):
        self.conn = conn
        self.plan = plan
        self.keys = KeyReader(conn, plan.key.type_oid, plan.copy_format)

    def read(self, lo: str | None, hi: str | None, limit: int) -> PgChunk:
        return PgChunk(self, self.plan.copy_out(lo, hi), limit)


class PgChunk:
    def __init__(self, reader: PgChunkReader, query: sql.Composed, limit: int):
        self.reader = reader
        self.query = query
        self.limit = limit
        self.tail = CopyTail()

    def blocks(self) -> Iterator[Buffer]:
        return copy_out_blocks(self.reader.conn, self.query, BLOCK_SIZE, self.tail)

    def end(self) -> ChunkEnd:
        tail = self.tail
        rows, last_row = tail.messages, tail.last
        if self.reader.plan.copy_format == BINARY:
            # The header rides on the first message, the trailer comes alone (or with the header
            # when there are no rows at all).
            if len(tail.last) == len(BINARY_TRAILER):
                rows, last_row = tail.messages - 1, tail.prev
            else:
                rows, last_row = 0, b""
        last_key = self.reader.keys.key_of(last_row) if rows else None
        return ChunkEnd(rows, last_key, rows < self.limit)

    def where(self, lo: str | None) -> str:
        hi = "?"
        for candidate in (self.tail.last, self.tail.prev):
            try:
                if candidate and len(candidate) > 2:
                    hi = self.reader.keys.key_of(candidate)
                    break
            except Exception:
                continue
        return f"{self.reader.plan.key.name} in ({lo if lo is not None else '-inf'}, {hi}]"

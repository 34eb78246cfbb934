"""PostgreSQL as a source: keyset chunks read with COPY TO STDOUT and forwarded undecoded.

Pass-through chunks stay raw COPY blocks (binary when the column types match); only the first field
of a chunk's last row is parsed, for the checkpoint. Parallel readers share one exported snapshot.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from etl_platform.transfer import catalog, ranges
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.copy_out import CopyTail, copy_out_blocks
from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.keys import KeyReader
from etl_platform.transfer.plan import BINARY, TransferPlan, build_plan
from etl_platform.transfer.session import ConnectionFactory, connect_pinned
from etl_platform.transfer.sources.base import BLOCK_SIZE, Buffer, ChunkEnd
from etl_platform.transfer.spec import TransferSpec

# What a transfer's read-ahead may hold, shared by its streams (at least 4 MB each): a destination's
# COPY end and commit take ~4 MB of rows. (16 MB measured no faster.)
READ_AHEAD_BYTES = 8 * 1024 * 1024
MIN_READ_AHEAD_BYTES = 4 * 1024 * 1024


def read_ahead_bytes(plan: TransferPlan, streams: int) -> int:
    """A transform holds whole chunks (and their Arrow forms) one chunk ahead already: the least."""
    if plan.spec.transform is not None:
        return MIN_READ_AHEAD_BYTES
    return max(READ_AHEAD_BYTES // max(streams, 1), MIN_READ_AHEAD_BYTES)


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
                yield [PgChunkReader(ctl, plan, read_ahead_bytes(plan, 1))]
                return
            snapshot = ctl.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            self._consistency = f"one snapshot shared by {len(parts)} streams"
            with ExitStack() as stack:
                readers = []
                for _ in parts:
                    conn = stack.enter_context(connect_pinned(self.factory))
                    stack.callback(stop_reading_ahead, conn)  # before the connection closes
                    conn.isolation_level = IsolationLevel.REPEATABLE_READ
                    conn.read_only = True
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                    readers.append(PgChunkReader(conn, plan, read_ahead_bytes(plan, len(parts))))
                yield readers
        finally:
            stop_reading_ahead(ctl)
            ctl.rollback()
            ctl.isolation_level = None
            ctl.read_only = None


class PgChunkReader:
    """Reads one part's chunks. A thread reads ahead of the engine: once a chunk's COPY ends, the
    next chunk's starts at its last key, and its blocks queue up (at most `read_ahead` bytes) while
    the engine still writes and commits the chunk before. So the source and the client keep working
    while the destination finishes a chunk, which is where a chunk-at-a-time loop left them idle."""

    def __init__(self, conn: psycopg.Connection[Any], plan: TransferPlan, read_ahead: int | None = None):
        self.conn = conn
        self.plan = plan
        self.read_ahead = MIN_READ_AHEAD_BYTES if read_ahead is None else read_ahead
        self.keys = KeyReader(conn, plan.key.type_oid, plan.copy_format)

    def read(self, lo: str | None, hi: str | None, limit: int) -> PgChunk:
        with _AHEAD_LOCK:
            ahead = _AHEAD.get(self.conn)
        if ahead is None or not ahead.continues(self, lo, hi, limit):
            stop_reading_ahead(self.conn)  # one statement at a time on a connection
            ahead = _ReadAhead(self, lo, hi, limit)
            with _AHEAD_LOCK:
                _AHEAD[self.conn] = ahead
        return ahead.next_chunk(lo)

    def chunk_end(self, tail: CopyTail, limit: int) -> ChunkEnd:
        rows = tail.rows
        # In binary format the header rides on the first row's message and the trailer comes last,
        # alone (with the header when there are no rows at all): the last row is the one before it.
        last_row = tail.prev if self.plan.copy_format == BINARY else tail.last
        last_key = self.keys.key_of(last_row) if rows else None
        return ChunkEnd(rows, last_key, rows < limit)


def stop_reading_ahead(conn: psycopg.Connection[Any]) -> None:
    """Stops the connection's read-ahead thread; the COPY it was in is read to its end and dropped."""
    with _AHEAD_LOCK:
        ahead = _AHEAD.pop(conn, None)
    if ahead is not None:
        ahead.stop()


STOP_GRACE_S = 1.0
_AHEAD: weakref.WeakKeyDictionary[psycopg.Connection[Any], _ReadAhead] = weakref.WeakKeyDictionary()
_AHEAD_LOCK = threading.Lock()


@dataclass
class _Started:
    """Queued before a chunk's first block: the tail the thread fills (a failing write names it)."""

    tail: CopyTail


@dataclass
class _Ended:
    """Queued after a chunk's last block: how it ended (or why its end could not be read)."""

    end: ChunkEnd | None
    error: BaseException | None


class _ReadAhead:
    """Chunk after chunk from (lo, hi] with `limit` rows each, read by a thread into a bounded queue."""

    def __init__(self, reader: PgChunkReader, lo: str | None, hi: str | None, limit: int):
        self.reader = reader
        self.hi = hi
        self.limit = limit
        self.next_lo = lo  # where the chunk the engine asks for next starts
        self.in_chunk = False  # a chunk was handed out and has not ended yet
        self.broken = False  # an error or the part's end stopped the thread: the next read starts over
        self.queue = _ByteQueue(reader.read_ahead)
        self.thread = threading.Thread(target=self._run, args=(lo,), name="etl-pg-read-ahead", daemon=True)
        self.thread.start()

    def continues(self, reader: PgChunkReader, lo: str | None, hi: str | None, limit: int) -> bool:
        return (
            not self.broken
            and not self.in_chunk
            and reader.plan is self.reader.plan
            and (lo, hi, limit) == (self.next_lo, self.hi, self.limit)
        )

    def next_chunk(self, lo: str | None) -> PgChunk:
        self.in_chunk = True
        return PgChunk(self, lo)

    def _run(self, lo: str | None) -> None:
        reader, queue = self.reader, self.queue
        _batch_scheduling()
        try:
            while True:
                tail = CopyTail()
                if not queue.put(_Started(tail), 0):
                    return
                blocks = copy_out_blocks(reader.conn, reader.plan.copy_out(lo, self.hi), BLOCK_SIZE, tail)
                with closing(blocks):  # stopped part way: the rest of the COPY is read and dropped
                    for block in blocks:
                        if not queue.put(block, len(block)):
                            return
                try:
                    end = reader.chunk_end(tail, self.limit)
                except Exception as exc:  # a NULL key: the engine raises it at the chunk's end
                    queue.put(_Ended(None, exc), 0)
                    return
                if not queue.put(_Ended(end, None), 0) or end.exhausted:
                    return
                lo = end.last_key
        except BaseException as exc:
            queue.put(exc, 0)

    def stop(self) -> None:
        """Stops the thread; a query that keeps it waiting on the server is cancelled."""
        self.queue.cancel()
        self.thread.join(timeout=STOP_GRACE_S)
        if self.thread.is_alive():
            with suppress(Exception):
                self.reader.conn.cancel_safe(timeout=STOP_GRACE_S)
            self.thread.join()


def _batch_scheduling() -> None:
    """Marks the calling (read-ahead) thread SCHED_BATCH on Linux: it still gets its share of CPU,
    but its wakeups (one per few kilobytes the source sends) no longer preempt whatever runs, such as
    the destination's backend, the slowest stage. It is megabytes ahead, so it can wait its turn. On
    2 cores this took the destination backend's involuntary context switches from ~1,000 to ~350
    and the source backend's from ~3,000 to ~450 per 2M rows. Elsewhere, or if refused: nothing."""
    setter = getattr(os, "sched_setscheduler", None)
    if setter is not None:
        with suppress(OSError):
            setter(0, os.SCHED_BATCH, os.sched_param(0))  # 0: this thread


class _ByteQueue:
    """A FIFO holding at most `capacity` bytes of blocks (markers count nothing); cancel() wakes
    and refuses every producer, so a stopped thread never waits for a consumer that is gone.

    A full queue lets its producer go on as soon as one block was taken. (Letting it go on only once
    half empty, so that it reads megabytes per wakeup, was slower: the thread and the source backend
    then run flat out together and take the destination backend's CPU; on 2 idle cores 0.94x the
    pipe instead of 1.00x, median of 4 interleaved rounds.)
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self.items: deque[tuple[Any, int]] = deque()
        self.cancelled = False
        self.cond = threading.Condition()

    def put(self, item: Any, size: int) -> bool:
        with self.cond:
            while self.size >= self.capacity and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                return False
            self.items.append((item, size))
            self.size += size
            self.cond.notify_all()
            return True

    def get(self) -> Any:
        with self.cond:
            while not self.items:
                if self.cancelled:
                    raise TransferError("the source's read-ahead was stopped")
                self.cond.wait()
            item, size = self.items.popleft()
            self.size -= size
            self.cond.notify_all()
            return item

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.items.clear()
            self.size = 0
            self.cond.notify_all()


class PgChunk:
    def __init__(self, ahead: _ReadAhead, lo: str | None):
        self.ahead = ahead
        self.lo = lo
        self.tail = CopyTail()  # the thread's, from the chunk's first queued item
        self._ended: _Ended | None = None

    def blocks(self) -> Iterator[Buffer]:
        ahead = self.ahead
        while True:
            item = ahead.queue.get()
            if isinstance(item, _Started):
                self.tail = item.tail
            elif isinstance(item, _Ended):
                self._ended = item
                ahead.in_chunk = False
                if item.end is None or item.end.exhausted:
                    ahead.broken = True
                else:
                    ahead.next_lo = item.end.last_key
                return
            elif isinstance(item, BaseException):
                ahead.broken = True
                raise item
            else:
                yield item

    def end(self) -> ChunkEnd:
        ended = self._ended
        assert ended is not None, "read the blocks first"
        if ended.error is not None:
            raise ended.error
        assert ended.end is not None
        return ended.end

    def where(self, lo: str | None) -> str:
        reader = self.ahead.reader
        hi = "?"
        for candidate in (self.tail.last, self.tail.prev):
            try:
                if candidate and len(candidate) > 2:
                    hi = reader.keys.key_of(candidate)
                    break
            except Exception:
                continue
        return f"{reader.plan.key.name} in ({lo if lo is not None else '-inf'}, {hi}]"

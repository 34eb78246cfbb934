"""Chunk rows for the per-run transfer view, written to etl_audit.task_chunks off the COPY path.

The engine reports each committed chunk to a ChunkSink (transfer/progress.py); this one only appends
to a buffer there. A thread of its own writes the buffer every `interval_s` or `batch_rows` chunks
(ChunkSettings, ledger/settings.py), and once more at the end, with one COPY per batch on one
connection. The ledger is bookkeeping: the first error is logged once and counted, the attempt
records no more chunks, and the transfer goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psutil
import psycopg

from etl_platform.ledger.settings import ChunkSettings
from etl_platform.ledger.writer import TaskAttempt
from etl_platform.transfer.progress import ChunkEvent, LoggerLike

_COPY = (
    'COPY etl_audit.task_chunks (pipeline, run_id, task_id, map_index, try_number, stream, seq, committed_at, "rows", '
    "bytes, seconds, rss_mb) FROM STDIN"
)
_Row = tuple[int, int, datetime, int, int, float, float | None]


class ChunkRecorder:
    """A ChunkSink for one task attempt; use it as a context manager around the transfer."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        attempt: TaskAttempt,
        log: LoggerLike,
        settings: ChunkSettings | None = None,
        *,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.connect = connect
        self.attempt = attempt
        self.log = log
        self.settings = settings or ChunkSettings()
        self.on_error = on_error
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self._buffer: list[_Row] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._failed = False
        self._conn: psycopg.Connection[Any] | None = None
        self._process = psutil.Process()
        self._thread = threading.Thread(target=self._run, name="etl-ledger-chunks", daemon=True)

    # -- the sink (the stream threads) ---------------------------------------------------------

    def chunk_committed(self, event: ChunkEvent) -> None:
        row = (
            event.stream,
            event.seq,
            datetime.fromtimestamp(event.committed_at, UTC),
            event.rows,
            event.nbytes,
            event.seconds,
            self._rss_mb(),
        )
        with self._lock:
            if self._failed or len(self._buffer) >= self.settings.max_buffered:
                self.dropped += 1  # the ledger is down or far behind: never hold the transfer for it
                return
            self._buffer.append(row)
            full = len(self._buffer) >= self.settings.batch_rows
        if full:
            self._wake.set()

    def _rss_mb(self) -> float | None:
        try:
            return round(self._process.memory_info().rss / 1_048_576, 1)
        except psutil.Error:
            return None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> ChunkRecorder:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Writes what is left (bounded by close_timeout_s: a hung ledger cannot hold the task)."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.settings.close_timeout_s)
        if self._thread.is_alive():
            self.log.warning(
                "ledger: chunk rows of %s still being written after %.0f s; not waiting",
                self.attempt.task_id,
                self.settings.close_timeout_s,
            )

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.settings.interval_s)
                self._wake.clear()
                closing = self._closing.is_set()
                self._flush()
                if closing:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch or self._failed:
            return
        a = self.attempt
        key = (a.pipeline, a.run_id, a.task_id, a.map_index, a.try_number)
        try:
            if self._conn is None:
                self._conn = self.connect()
            with self._conn.cursor() as cur, cur.copy(_COPY) as copy:
                for row in batch:
                    copy.write_row((*key, *row))
            self._conn.commit()
            self.written += len(batch)
        except Exception as exc:  # bookkeeping: whatever breaks here stays here
            with self._lock:
                self._failed = True
                self.dropped += len(batch) + len(self._buffer)
                self._buffer = []
            self.errors += 1
            self.log.warning(
                "ledger: could not record the chunks of %s (%s: %s); this attempt records no more",
                a.task_id,
                type(exc).__name__,
                exc,
            )
            if self.on_error is not None:
                self.on_error()

"""Progress lines, metrics and chunk records per committed chunk."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from etl_platform.common.protocols import LoggerLike, MetricsSink

__all__ = ["ChunkEvent", "ChunkSink", "LoggerLike", "MetricsSink", "Progress", "recording_chunks"]


@dataclass(frozen=True)
class ChunkEvent:
    """One committed chunk, as a ChunkSink receives it."""

    seq: int  # this attempt's chunk count, from 1
    stream: int  # the key-range stream (part) that committed it, from 0
    rows: int  # rows read
    rows_written: int
    nbytes: int
    seconds: float
    committed_at: float  # time.time() after the commit


class ChunkSink(Protocol):
    """Receives every committed chunk on the stream's thread: must return at once and never raise."""

    def chunk_committed(self, event: ChunkEvent) -> None: ...


# The caller (the operator) installs a sink around a run; the engine needs no parameter for it and
# stays free of Airflow and of the ledger.
_CHUNK_SINK: ContextVar[ChunkSink | None] = ContextVar("etl_transfer_chunk_sink", default=None)


@contextmanager
def recording_chunks(sink: ChunkSink) -> Iterator[None]:
    """Every Progress created inside this block reports its chunks to `sink`."""
    token = _CHUNK_SINK.set(sink)
    try:
        yield
    finally:
        _CHUNK_SINK.reset(token)


class Progress:
    def __init__(
        self,
        log: LoggerLike,
        label: str,
        estimated_total: int,
        rows_before: int,
        metrics: MetricsSink | None = None,
        tags: dict[str, str] | None = None,
        sink: ChunkSink | None = None,
    ):
        self.log = log
        self.sink = sink if sink is not None else _CHUNK_SINK.get()
        self._sink_failed = False
        self.label = label
        self.estimated_total = max(estimated_total, 0)
        self.rows_before = rows_before
        self.metrics = metrics
        self.tags = tags or {}
        self.rows = 0
        self.bytes = 0
        self.chunks = 0
        self.rows_written = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def chunk_done(
        self, part: int, parts: int, rows: int, rows_written: int, nbytes: int, seconds: float, keys: str
    ) -> None:
        with self._lock:
            self.rows += rows
            self.rows_written += rows_written
            self.bytes += nbytes
            self.chunks += 1
            done, chunk_no = self.rows_before + self.rows, self.chunks
            elapsed = time.perf_counter() - self.started
        if self.sink is not None:
            self._record(ChunkEvent(chunk_no, part, rows, rows_written, nbytes, seconds, time.time()))
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        total = max(self.estimated_total, done)
        percent = 100.0 * done / total if total else 100.0
        eta = (total - done) / rate if rate > 0 else 0.0
        stream = f" stream {part + 1}/{parts}" if parts > 1 else ""
        self.log.info(
            "%s: chunk %d%s: %s/%s rows (%.1f%%), %s rows/s, ETA %.1f s, keys %s",
            self.label,
            chunk_no,
            stream,
            f"{done:,}",
            f"~{total:,}",
            percent,
            f"{rate:,.0f}",
            eta,
            keys,
        )
        if self.metrics is not None:
            self.metrics.incr("etl.transfer.rows", rows, tags=self.tags)
            self.metrics.incr("etl.transfer.bytes", nbytes, tags=self.tags)
            self.metrics.incr("etl.transfer.chunks", 1, tags=self.tags)
            self.metrics.timing("etl.transfer.chunk_duration", seconds * 1000.0, tags=self.tags)

    def _record(self, event: ChunkEvent) -> None:
        """A sink that breaks its promise and raises is dropped, with one warning: never the transfer."""
        if self._sink_failed or self.sink is None:
            return
        try:
            self.sink.chunk_committed(event)
        except Exception as exc:
            self._sink_failed = True
            self.log.warning("%s: chunk records stopped: %s", self.label, exc)

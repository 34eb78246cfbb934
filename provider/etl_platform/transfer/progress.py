"""Progress lines and metrics per committed chunk."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class LoggerLike(Protocol):
    """A stdlib logger or Airflow's structlog task logger."""

    def info(self, event: Any, /, *args: Any) -> Any: ...

    def warning(self, event: Any, /, *args: Any) -> Any: ...


class MetricsSink(Protocol):
    """What the engine needs from a StatsD client; the operator passes Airflow's Stats."""

    def incr(
        self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None
    ) -> None: ...

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None: ...


class Progress:
    def __init__(
        self,
        log: LoggerLike,
        label: str,
        estimated_total: int,
        rows_before: int,
        metrics: MetricsSink | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.log = log
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

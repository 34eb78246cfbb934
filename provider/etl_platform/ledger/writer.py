"""Ledger rows for a task attempt: 'running' when it starts, final figures when it ends.

The attempt's row is etl_audit.task_runs; its DAG run's row (pipeline_runs) goes through ledger/runs.py,
the one writer of that table. The ledger is bookkeeping: if it cannot be written, the transfer still
runs and the failure is logged, never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors

from etl_platform.ledger import runs
from etl_platform.transfer.progress import LoggerLike

_START_TASK = """
INSERT INTO etl_audit.task_runs (pipeline, run_id, task_id, map_index, try_number, started_at, status,
                                 source, destination)
VALUES (%(pipeline)s, %(run_id)s, %(task_id)s, %(map_index)s, %(try_number)s, %(started_at)s, 'running',
        %(source)s, %(destination)s)
RETURNING id
"""
_FINISH_TASK = """
UPDATE etl_audit.task_runs
SET finished_at = now(), status = %(status)s, rows = %(rows)s, bytes = %(bytes)s, seconds = %(seconds)s,
    rows_per_second = %(rows_per_second)s, peak_rss_mb = %(peak_rss_mb)s, resumed_from = %(resumed_from)s,
    strategy = %(strategy)s, error = %(error)s
WHERE id = %(id)s AND started_at = %(started_at)s
"""


@dataclass(frozen=True)
class TaskAttempt:
    """One try of one task (map index included); `run_started_at` is its DAG run's start_date."""

    pipeline: str
    run_id: str
    run_started_at: datetime
    task_id: str
    map_index: int
    try_number: int
    started_at: datetime
    source: str
    destination: str

    @property
    def run(self) -> runs.PipelineRun:
        """The key of the DAG run's row in pipeline_runs."""
        return runs.PipelineRun(self.pipeline, self.run_id, self.run_started_at)


class LedgerWriter:
    """Records one attempt: `started` then `finished`, each on a connection of its own."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], log: LoggerLike):
        self.connect = connect
        self.log = log
        self._row_id: int | None = None

    def started(self, attempt: TaskAttempt) -> None:
        params = vars(attempt)
        try:
            with self.connect() as conn:
                runs.open_run(conn, attempt.run)
                row = conn.execute(_START_TASK, params).fetchone()
                self._row_id = int(row[0]) if row else None
        except psycopg.Error as exc:
            self.log.warning("ledger: could not record the start of %s: %s", attempt.task_id, exc)

    def finished(self, attempt: TaskAttempt, summary: dict[str, Any] | None, error: str | None) -> None:
        if self._row_id is None:
            return
        summary = summary or {}
        resumed = summary.get("resumed_from")
        params = {
            **vars(attempt),
            "id": self._row_id,
            "status": "failed" if error else "success",
            "rows": summary.get("rows"),
            "bytes": summary.get("bytes"),
            "seconds": summary.get("seconds"),
            "rows_per_second": summary.get("rows_per_second"),
            "peak_rss_mb": summary.get("peak_rss_mb"),
            "resumed_from": None if resumed is None else str(resumed),
            "strategy": summary.get("strategy"),
            "error": error[:4000] if error else None,
        }
        try:
            with self.connect() as conn:
                try:
                    with conn.transaction():
                        conn.execute(_FINISH_TASK, params)
                except psycopg.errors.UndefinedColumn:
                    # A ledger from before migration 004: record the end all the same, without strategy.
                    self.log.warning(
                        "ledger: no task_runs.strategy (apply the ledger migrations); not recorded"
                    )
                    conn.execute(_FINISH_TASK.replace("strategy = %(strategy)s, ", ""), params)
                runs.add_totals(conn, attempt.run, params["rows"], params["bytes"], params["error"])
        except psycopg.Error as exc:
            self.log.warning("ledger: could not record the end of %s: %s", attempt.task_id, exc)

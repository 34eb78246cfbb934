"""The one writer of etl_audit.pipeline_runs, shared by the DAG-run listener and the task attempts.

A run's row is keyed by (pipeline, run_id, started_at), started_at being the DAG run's start_date: a
cleared and re-run DAG run gets a new start_date, so a row of its own. One conflict rule for every caller:

- open: insert the run as 'running'; a row that exists is left as it is (first writer wins). The
  listener opens every run when it starts; an attempt opens it too in case the listener is off or
  missed it. Only the run's end changes its status, so a late attempt cannot reopen a finished run.
- close: upsert the outcome (status, finished_at, an error kept unless a new one is given), so a run
  whose start was missed (the ledger down at the time) is still recorded when it ends.
- add_totals: an attempt's rows and bytes (and its error, if any) added to the run's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

_OPEN = """
INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, status)
VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, 'running')
ON CONFLICT (pipeline, run_id, started_at) DO NOTHING
"""
_CLOSE = """
INSERT INTO etl_audit.pipeline_runs AS r (pipeline, run_id, started_at, finished_at, status, error)
VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, coalesce(%(finished_at)s, now()), %(status)s, %(error)s)
ON CONFLICT (pipeline, run_id, started_at) DO UPDATE
SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, updated_at = now(),
    error = coalesce(EXCLUDED.error, r.error)
"""
_ADD_TOTALS = """
UPDATE etl_audit.pipeline_runs
SET rows = rows + coalesce(%(rows)s, 0), bytes = bytes + coalesce(%(bytes)s, 0),
    error = coalesce(%(error)s, error), updated_at = now()
WHERE pipeline = %(pipeline)s AND run_id = %(run_id)s AND started_at = %(started_at)s
"""


@dataclass(frozen=True)
class PipelineRun:
    """The key of a run's row: the DAG id, the run id and the DAG run's start_date."""

    pipeline: str
    run_id: str
    started_at: datetime

    def params(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "run_id": self.run_id, "started_at": self.started_at}


def open_run(conn: psycopg.Connection[Any], run: PipelineRun) -> None:
    """Insert the run as 'running' unless its row exists (then nothing changes)."""
    conn.execute(_OPEN, run.params())


def close_run(
    conn: psycopg.Connection[Any],
    run: PipelineRun,
    status: str,
    finished_at: datetime | None,
    error: str | None,
) -> None:
    """Record the run's outcome (finished now when `finished_at` is None), inserting it if need be."""
    conn.execute(_CLOSE, {**run.params(), "status": status, "finished_at": finished_at, "error": error})


def add_totals(
    conn: psycopg.Connection[Any], run: PipelineRun, rows: int | None, nbytes: int | None, error: str | None
) -> None:
    """Add an attempt's figures to the run's row (no row: nothing, the attempt's own row still has them)."""
    conn.execute(_ADD_TOTALS, {**run.params(), "rows": rows, "bytes": nbytes, "error": error})

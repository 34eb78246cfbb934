"""The run ledger's view of DAG runs: every run opened when it starts, closed with its outcome.

Called by the run-event listener (listeners/run_events.py) in the scheduler, which then publishes the
change; enabled by `[etl_platform] ledger_conn_id` (env AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID). Opening
every run (not only those with transfer tasks) lets the dashboard show all pipelines; started_at is the
DAG run's start_date, the value the transfer operator records too, so the two inserts meet ON CONFLICT.
Task attempts record themselves; only the DAG run knows whether the pipeline as a whole succeeded.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

log = logging.getLogger(__name__)

_OPEN = """
INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, status)
VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, 'running')
ON CONFLICT (pipeline, run_id, started_at) DO NOTHING
"""
_CLOSE = """
UPDATE etl_audit.pipeline_runs
SET status = %(status)s, finished_at = now(), updated_at = now(), error = coalesce(%(error)s, error)
WHERE pipeline = %(pipeline)s AND run_id = %(run_id)s
"""


def ledger_conn_id() -> str | None:
    from airflow.sdk import conf

    return conf.get("etl_platform", "ledger_conn_id", fallback=None) or None


def open_run(dag_run: Any) -> bool:
    """Insert the pipeline run as running (a no-op if it exists); False if not recorded."""
    started_at = getattr(dag_run, "start_date", None)
    if started_at is None:
        log.warning("ledger: DAG run %s has no start_date; not recorded", getattr(dag_run, "run_id", "?"))
        return False
    params = {"pipeline": dag_run.dag_id, "run_id": dag_run.run_id, "started_at": started_at}
    return _execute(_OPEN, params, "open", dag_run)


def close_run(dag_run: Any, status: str, error: str | None) -> bool:
    """Mark the pipeline run finished with `status`; False if not written."""
    params = {"status": status, "error": error, "pipeline": dag_run.dag_id, "run_id": dag_run.run_id}
    return _execute(_CLOSE, params, "close", dag_run)


def _execute(statement: str, params: dict[str, Any], what: str, dag_run: Any) -> bool:
    try:
        conn_id = ledger_conn_id()
        if not conn_id:
            return False
        from etl_platform.hooks.postgres import EtlPostgresHook

        with psycopg.connect(EtlPostgresHook(conn_id).conninfo(), connect_timeout=5) as conn:
            conn.execute(statement, params)
        return True
    except Exception as exc:  # bookkeeping must never disturb the scheduler
        log.warning("ledger: could not %s pipeline run %s: %s", what, getattr(dag_run, "run_id", "?"), exc)
        return False

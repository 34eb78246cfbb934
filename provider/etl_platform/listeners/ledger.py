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

from etl_platform.common.backoff import Backoff

log = logging.getLogger(__name__)

_OPEN = """
INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, status)
VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, 'running')
ON CONFLICT (pipeline, run_id, started_at) DO NOTHING
"""
# An upsert on the run's own row (a cleared and re-run DAG run has a new start_date, so a row of its own),
# so a run whose start was missed (ledger down at the time) is still recorded when it ends.
_CLOSE = """
INSERT INTO etl_audit.pipeline_runs AS r (pipeline, run_id, started_at, finished_at, status, error)
VALUES (%(pipeline)s, %(run_id)s, %(started_at)s, coalesce(%(finished_at)s, now()), %(status)s, %(error)s)
ON CONFLICT (pipeline, run_id, started_at) DO UPDATE
SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, updated_at = now(),
    error = coalesce(EXCLUDED.error, r.error)
"""
RETRY_AFTER_S = 10.0  # after a failure the ledger is left alone this long: the scheduler must not wait on it
_backoff = Backoff(RETRY_AFTER_S)


def ledger_conn_id() -> str | None:
    from airflow.sdk import conf

    return conf.get("etl_platform", "ledger_conn_id", fallback=None) or None


def open_run(dag_run: Any) -> bool:
    """Insert the pipeline run as running (a no-op if it exists); False if not recorded."""
    return _execute(_OPEN, _params(dag_run), "open", dag_run)


def close_run(dag_run: Any, status: str, error: str | None) -> bool:
    """Mark the pipeline run finished with `status` (inserting it if its start was missed)."""
    params = {**_params(dag_run), "status": status, "error": error}
    params["finished_at"] = getattr(dag_run, "end_date", None)
    return _execute(_CLOSE, params, "close", dag_run)


def _params(dag_run: Any) -> dict[str, Any]:
    return {
        "pipeline": dag_run.dag_id,
        "run_id": dag_run.run_id,
        "started_at": getattr(dag_run, "start_date", None),
    }


def _execute(statement: str, params: dict[str, Any], what: str, dag_run: Any) -> bool:
    run_id = getattr(dag_run, "run_id", "?")
    if params["started_at"] is None:
        log.warning("ledger: DAG run %s has no start_date; not recorded", run_id)
        return False
    if not _backoff.ready():
        log.warning("ledger: unavailable a moment ago; not waiting on it to %s pipeline run %s", what, run_id)
        return False
    try:
        conn_id = ledger_conn_id()
        if not conn_id:
            return False
        from etl_platform.hooks.postgres import EtlPostgresHook

        with psycopg.connect(EtlPostgresHook(conn_id).conninfo(), connect_timeout=3) as conn:
            conn.execute(statement, params)
        return True
    except Exception as exc:  # bookkeeping must never disturb the scheduler
        _backoff.failed()
        log.warning("ledger: could not %s pipeline run %s: %s", what, run_id, exc)
        return False

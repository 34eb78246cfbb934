"""Closes pipeline runs in the run ledger when their DAG run ends (runs where the scheduler runs).

Enabled by `[etl_platform] ledger_conn_id` (env AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID). Task attempts
record themselves; only the DAG run knows whether the pipeline as a whole succeeded.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

_CLOSE = """
UPDATE etl_audit.pipeline_runs
SET status = %(status)s, finished_at = now(), updated_at = now(), error = coalesce(%(error)s, error)
WHERE pipeline = %(pipeline)s AND run_id = %(run_id)s
"""


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _close(dag_run, "success", None)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _close(dag_run, "failed", msg or "DAG run failed")


def _close(dag_run: Any, status: str, error: str | None) -> None:
    try:
        from airflow.sdk import conf

        conn_id = conf.get("etl_platform", "ledger_conn_id", fallback=None)
        if not conn_id:
            return
        from etl_platform.hooks.postgres import EtlPostgresHook

        params = {"status": status, "error": error, "pipeline": dag_run.dag_id, "run_id": dag_run.run_id}
        with psycopg.connect(EtlPostgresHook(conn_id).conninfo(), connect_timeout=5) as conn:
            conn.execute(_CLOSE, params)
    except Exception as exc:  # bookkeeping must never disturb the scheduler
        log.warning("ledger: could not close pipeline run %s: %s", getattr(dag_run, "run_id", "?"), exc)

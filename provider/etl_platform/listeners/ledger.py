"""The run ledger's view of DAG runs: every run opened when it starts, closed with its outcome.

Called by the run-event listener (listeners/run_events.py) in the scheduler, which then publishes the
change; enabled by `[etl_platform] ledger_conn_id` (env AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID). Opening
every run (not only those with transfer tasks) lets the dashboard show all pipelines; started_at is the
DAG run's start_date, the value the transfer operator records too, so both reach the same row. The rows
are written by ledger/runs.py (its docstring has the conflict rule). Task attempts record themselves;
only the DAG run knows whether the pipeline as a whole succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from etl_platform.common.backoff import Backoff
from etl_platform.common.errors import ConfigError
from etl_platform.ledger import runs
from etl_platform.ledger.settings import LedgerSettings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 10.0  # after a failure the ledger is left alone this long: the scheduler must not wait on it
_backoff = Backoff(RETRY_AFTER_S)

Write = Callable[[psycopg.Connection[Any], runs.PipelineRun], None]


def open_run(dag_run: Any) -> bool:
    """Insert the pipeline run as running (a no-op if it exists); False if not recorded."""
    return _write(dag_run, "open", runs.open_run)


def close_run(dag_run: Any, status: str, error: str | None) -> bool:
    """Mark the pipeline run finished with `status` (inserting it if its start was missed)."""
    finished_at = getattr(dag_run, "end_date", None)

    def close(conn: psycopg.Connection[Any], run: runs.PipelineRun) -> None:
        runs.close_run(conn, run, status, finished_at, error)

    return _write(dag_run, "close", close)


def _write(dag_run: Any, what: str, write: Write) -> bool:
    run_id = getattr(dag_run, "run_id", "?")
    started_at = getattr(dag_run, "start_date", None)
    if started_at is None:
        log.warning("ledger: DAG run %s has no start_date; not recorded", run_id)
        return False
    if not _backoff.ready():
        log.warning("ledger: unavailable a moment ago; not waiting on it to %s pipeline run %s", what, run_id)
        return False
    try:
        from airflow.sdk import conf

        settings = LedgerSettings.from_conf(conf)
    except ConfigError as exc:  # a listener must not raise: the scheduler calls it
        log.warning("ledger: not configured correctly, pipeline run %s not recorded: %s", run_id, exc)
        return False
    except Exception as exc:  # a config source that fails (a _CMD or secrets backend): ride it out
        _backoff.failed()
        log.warning("ledger: could not read its settings for pipeline run %s: %s", run_id, exc)
        return False
    if settings is None:
        return False
    try:
        from etl_platform.hooks.postgres import EtlPostgresHook

        conninfo = EtlPostgresHook(settings.conn_id).conninfo()
        with psycopg.connect(conninfo, connect_timeout=settings.connect_timeout_s) as conn:
            write(conn, runs.PipelineRun(dag_run.dag_id, dag_run.run_id, started_at))
        return True
    except Exception as exc:  # bookkeeping must never disturb the scheduler
        _backoff.failed()
        log.warning("ledger: could not %s pipeline run %s: %s", what, run_id, exc)
        return False

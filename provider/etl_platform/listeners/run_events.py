"""Publishes every DAG run and task status change on Redis (`etl:runs:<pipeline>`) for the dashboard.

DAG-run hooks fire in the scheduler: the run is written to the ledger first (listeners/ledger.py), then
published, so a dashboard that refreshes on the event reads the new figures. Task hooks fire in the
task's own process. A listener must never fail or stall the process that calls it: errors are logged
as warnings, Redis calls have short timeouts, and after a failure Redis is left alone for a while.
Without a Redis ([etl_platform] redis_conn_id, else a Redis Celery broker) publishing is a no-op.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.listeners import hookimpl

from etl_platform.common.backoff import Backoff
from etl_platform.events import publish_run_event, run_event
from etl_platform.listeners import ledger

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5
RETRY_AFTER_S = 10.0
_lock = threading.Lock()
_clients: dict[str, Any] = {}  # redis URL -> client, one per process
_conn_urls: dict[str, str | None] = {}  # redis_conn_id -> URL: a connection look-up may be a round trip
_backoff = Backoff(RETRY_AFTER_S)  # after a failure Redis is left alone this long


# ---------------------------------------------------------------------- DAG runs (scheduler)
@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    ledger.open_run(dag_run)
    _publish_dag_run(dag_run, "running")


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    ledger.close_run(dag_run, "success", None)
    _publish_dag_run(dag_run, "success")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    ledger.close_run(dag_run, "failed", msg or "DAG run failed")
    _publish_dag_run(dag_run, "failed")


# ---------------------------------------------------------------------- tasks (task processes)
@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    _publish_task(task_instance, "running")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _publish_task(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _publish_task(task_instance, "failed")


# ---------------------------------------------------------------------- publishing
def _publish_dag_run(dag_run: Any, status: str) -> None:
    try:
        at = (
            getattr(dag_run, "end_date", None)
            if status != "running"
            else getattr(dag_run, "start_date", None)
        )
        publish(run_event("dag_run", str(dag_run.dag_id), str(dag_run.run_id), status, at=at))
    except Exception as exc:
        log.warning("run events: could not publish DAG run %s: %s", getattr(dag_run, "run_id", "?"), exc)


def _publish_task(task_instance: Any, status: str) -> None:
    try:
        map_index = getattr(task_instance, "map_index", None)
        event = run_event(
            "task",
            str(task_instance.dag_id),
            str(task_instance.run_id),
            status,
            task_id=str(task_instance.task_id),
            map_index=int(map_index) if map_index is not None else None,
        )
        publish(event)
    except Exception as exc:
        log.warning("run events: could not publish task %s: %s", getattr(task_instance, "task_id", "?"), exc)


def publish(event: dict[str, Any]) -> bool:
    """Publish one event on the configured Redis; False (and a warning) when it could not."""
    if not _backoff.ready():
        return False
    try:
        client = _client()
        if client is None:
            return False
        publish_run_event(client, event)
        return True
    except Exception as exc:
        _backoff.failed()
        log.warning("run events: Redis unavailable, events dropped for %.0f s: %s", RETRY_AFTER_S, exc)
        return False


def _client() -> Any:
    """The process's Redis client for the configured URL (None when there is no Redis)."""
    from airflow.sdk import conf

    from etl_platform.hooks.redis_url import resolve_redis_url

    conn_id = conf.get("etl_platform", "redis_conn_id", fallback="") or None
    if conn_id is None:
        url = resolve_redis_url(None)
    else:
        if conn_id not in _conn_urls:
            _conn_urls[conn_id] = resolve_redis_url(conn_id)
        url = _conn_urls[conn_id]
    if not url:
        return None
    with _lock:
        client = _clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
            _clients[url] = client
    return client

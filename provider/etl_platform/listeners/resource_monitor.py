"""Resource monitor: every task's duration, peak memory and memory delta, logged and sent to StatsD.

The original design wrapped tasks in a ResourceMonitorTask; a listener does the same for every
operator without touching DAG code. Task listeners run inside the task's own process.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

import psutil
from airflow.listeners import hookimpl

log = logging.getLogger(__name__)
_started: dict[str, tuple[float, float]] = {}  # task instance id -> (monotonic start, rss MiB)


def _key(task_instance: Any) -> str:
    return str(getattr(task_instance, "id", None) or id(task_instance))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    _started[_key(task_instance)] = (time.monotonic(), _rss_mb())


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _record(task_instance, "failed")


def _record(task_instance: Any, outcome: str) -> None:
    started = _started.pop(_key(task_instance), None)
    if started is None:
        return
    began, rss_before = started
    duration = time.monotonic() - began
    rss_after = _rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tags = {"dag_id": str(task_instance.dag_id), "task_id": str(task_instance.task_id), "outcome": outcome}
    log.info(
        "resource monitor: %s.%s %s in %.2f s, peak RSS %.1f MB, RSS delta %+.1f MB",
        task_instance.dag_id,
        task_instance.task_id,
        outcome,
        duration,
        peak,
        rss_after - rss_before,
    )
    try:
        from airflow.sdk.observability.stats import Stats

        Stats.timing("etl.task.duration", duration * 1000.0, tags=tags)
        Stats.gauge("etl.task.peak_rss_mb", peak, tags=tags)
        Stats.gauge("etl.task.rss_delta_mb", rss_after - rss_before, tags=tags)
    except Exception as exc:  # metrics must never fail a task
        log.warning("resource monitor: could not send metrics: %s", exc)

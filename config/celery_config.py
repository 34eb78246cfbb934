"""Celery settings for the ETL workers: `[celery] celery_config_options = config.celery_config.CELERY_CONFIG`.

The worker hands this dict to Celery verbatim, while the scheduler merges it over its own defaults, so it
is built over Airflow's DEFAULT_CELERY_CONFIG: broker_url, result_backend (AIRFLOW__CELERY__RESULT_BACKEND,
a `db+postgresql+psycopg://` URL), serializers and the rest keep coming from Airflow's configuration.

Importable as `config.celery_config` when the repository root (/opt/airflow in the containers) is on
PYTHONPATH. Importing it has no side effects beyond reading Airflow's configuration and two env vars.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.configuration import conf
from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from kombu import Exchange, Queue

# The queues operators route to with `queue=...`; one worker service per queue in docker-compose.yaml.
# `monitoring` is performance_monitoring's alone, so a health reading never queues behind ETL work.
ETL_QUEUES = ("extract", "transform", "load", "notifications", "monitoring")

# Where Airflow sends tasks that name no queue ([operators] default_queue, "default" unless changed).
DEFAULT_QUEUE: str = conf.get("operators", "default_queue", fallback="default")

# A message taken by a worker that then dies (SIGKILL, OOM, lost node) stays in Redis's "unacked" hash
# and goes back to its queue once this many seconds have passed. Short, so work lost before it started is
# retried within about a minute. The trade-off: a task running longer than this is delivered a second
# time while it still runs; Airflow 3.3 answers that copy with TaskAlreadyRunningError and Celery drops
# it (one short-lived extra process per long task, no second run). Raise it with
# [celery_broker_transport_options] visibility_timeout (AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__...).
VISIBILITY_TIMEOUT_SECONDS = 60

# Celery replaces a pool child once its resident memory passes this (KiB), after the task it runs ends.
# Per worker service: ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB. The task itself runs in a process the child
# forks (Airflow's supervisor), so this guards against slow leaks in the child; the container's
# mem_limit is the hard cap for the task.
DEFAULT_MAX_MEMORY_PER_CHILD_KIB = 2 * 1024 * 1024


def _queue(name: str) -> Queue:
    """A direct-exchange queue named like its routing key, as Celery would create it on demand."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _visibility_timeout() -> int:
    """An explicit Airflow setting wins; otherwise ours (Airflow's own fallback is 24 hours)."""
    configured = conf.getsection("celery_broker_transport_options") or {}
    if "visibility_timeout" in configured:
        return int(configured["visibility_timeout"])
    return VISIBILITY_TIMEOUT_SECONDS


def _max_memory_per_child_kib() -> int:
    return int(os.environ.get("ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB", DEFAULT_MAX_MEMORY_PER_CHILD_KIB))


CELERY_CONFIG: dict[str, Any] = {
    **DEFAULT_CELERY_CONFIG,
    # One message at a time per pool process: a long COPY must not sit on a queue of prefetched tasks.
    "worker_prefetch_multiplier": 1,
    # Acknowledge after the task ends, and give the message back if the pool process dies, so a killed
    # worker's task is delivered again instead of being lost.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "task_default_queue": DEFAULT_QUEUE,
    "task_default_exchange": DEFAULT_QUEUE,
    "task_queues": tuple(_queue(name) for name in dict.fromkeys((DEFAULT_QUEUE, *ETL_QUEUES))),
    "worker_max_memory_per_child": _max_memory_per_child_kib(),
    "broker_transport_options": {
        **DEFAULT_CELERY_CONFIG["broker_transport_options"],
        "visibility_timeout": _visibility_timeout(),
    },
}

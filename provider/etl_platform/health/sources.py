"""Turns a health check's connection ids into addresses, inside the process that runs the check.

Which Redis "the broker" is lives in hooks/redis_url.py: the dashboard and the run-event listener
ask the same question and must get the same answer.
"""

from __future__ import annotations

from airflow.sdk import BaseHook

from etl_platform.health.config import HealthConfig
from etl_platform.health.probes import Unavailable
from etl_platform.hooks.postgres import EtlPostgresHook  # imported here, not on the event loop
from etl_platform.hooks.redis_url import celery_broker_redis_url, redis_url_of_connection


async def resolve_source(config: HealthConfig, source: str) -> str | None:
    """The address of one source ("postgres", "pgbouncer", "redis"), or None when none is configured.

    Called inside the check that needs it (under its timeout); a connection that cannot be read
    raises Unavailable naming the connection id, and costs only the checks using it.
    """
    conn_id = {
        "postgres": config.postgres_conn_id,
        "pgbouncer": config.pgbouncer_conn_id,
        "redis": config.redis_conn_id,
    }[source]
    try:
        if source == "redis":
            if not conn_id:
                return celery_broker_redis_url()
            return redis_url_of_connection(await BaseHook.aget_connection(conn_id))
        if not conn_id:
            return None
        return await EtlPostgresHook(conn_id).aconninfo()
    except Exception as exc:
        raise Unavailable(
            f"Airflow connection {conn_id!r} is not defined or cannot be read ({type(exc).__name__})"
        ) from None

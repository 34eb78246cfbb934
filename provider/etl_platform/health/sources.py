"""Turns connection ids into addresses, inside the process that runs the check.

The Redis resolution is shared with the dashboard and the run-event listener (sync callers), so the
health checks, the cache and the live events agree on which Redis "the broker" is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook, conf

from etl_platform.health.config import HealthConfig
from etl_platform.health.probes import Unavailable
from etl_platform.hooks.postgres import EtlPostgresHook  # imported here, not on the event loop


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


def redis_url_of_connection(conn: Any) -> str:
    """redis[s]://[[user]:password@]host:port/db of an Airflow connection.

    db from extra ``db``, else the schema; ``ssl: true`` in extra (as the Redis provider's hook
    reads it) gives rediss://.
    """
    extra = conn.extra_dejson or {}
    user = quote(conn.login, safe="") if conn.login else ""
    auth = f"{user}:{quote(conn.password, safe='')}@" if conn.password else (f"{user}@" if user else "")
    db = extra.get("db", conn.schema or 0)
    scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("true", "1") else "redis"
    return f"{scheme}://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"


def celery_broker_redis_url() -> str | None:
    """`[celery] broker_url` when it is a Redis URL, else None."""
    broker = conf.get("celery", "broker_url", fallback=None)
    return broker if broker and broker.startswith(("redis://", "rediss://")) else None


def resolve_redis_url(conn_id: str | None) -> str | None:
    """Sync resolver: the connection's Redis URL, or the Celery broker's when `conn_id` is empty."""
    if conn_id:
        return redis_url_of_connection(BaseHook.get_connection(conn_id))
    return celery_broker_redis_url()

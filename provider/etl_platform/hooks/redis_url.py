"""Which Redis "the broker" is: one answer for the health checks, the dashboard's cache and the live events.

Plain Python; Airflow's configuration and connection lookups are imported inside the functions that use
them, so importing this module costs nothing at DAG parse time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


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
    from airflow.sdk import conf

    broker = conf.get("celery", "broker_url", fallback=None)
    return broker if broker and broker.startswith(("redis://", "rediss://")) else None


def resolve_redis_url(conn_id: str | None) -> str | None:
    """Sync resolver: the connection's Redis URL, or the Celery broker's when `conn_id` is empty."""
    if conn_id:
        from airflow.sdk import BaseHook

        return redis_url_of_connection(BaseHook.get_connection(conn_id))
    return celery_broker_redis_url()

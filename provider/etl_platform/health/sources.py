"""Turns connection ids into addresses, inside the process that runs the check.

The Redis resolution is shared with the dashboard and the run-event listener (sync callers), so the
health checks, the cache and the live events agree on which Redis "the broker" is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from etl_platform.health.config import HealthConfig
from etl_platform.health.evaluate import Sources


async def resolve_sources(config: HealthConfig) -> Sources:
    from etl_platform.hooks.postgres import EtlPostgresHook

    postgres = await EtlPostgresHook(config.postgres_conn_id).aconninfo() if config.postgres_conn_id else None
    pgbouncer = None
    if config.pgbouncer_conn_id:
        pgbouncer = await EtlPostgresHook(config.pgbouncer_conn_id).aconninfo()
    return Sources(postgres=postgres, pgbouncer=pgbouncer, redis=await _redis_url(config))


async def _redis_url(config: HealthConfig) -> str | None:
    if "queue_length" not in config.checks:
        return None
    if config.redis_conn_id:
        from airflow.sdk import BaseHook

        return redis_url_of_connection(await BaseHook.aget_connection(config.redis_conn_id))
    return celery_broker_redis_url()


def redis_url_of_connection(conn: Any) -> str:
    """redis://[:password@]host:port/db of an Airflow connection (db from extra `db`, else schema)."""
    auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
    db = (conn.extra_dejson or {}).get("db", conn.schema or 0)
    return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"


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

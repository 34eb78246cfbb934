"""Turns connection ids into addresses, inside the process that runs the check."""

from __future__ import annotations

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

        conn = await BaseHook.aget_connection(config.redis_conn_id)
        auth = f":{conn.password}@" if conn.password else ""
        db = (conn.extra_dejson or {}).get("db", conn.schema or 0)
        return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"
    from airflow.sdk import conf

    broker = conf.get("celery", "broker_url", fallback=None)
    return broker if broker and broker.startswith(("redis://", "rediss://")) else None

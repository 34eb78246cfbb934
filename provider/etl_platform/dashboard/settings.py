"""Where the dashboard reads the ledger and Redis, resolved from Airflow's configuration.

Resolved when the app starts (its lifespan), not at import: the plugin module is imported by every
Airflow process, and only the api-server needs these values.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

SECTION = "etl_platform"
DEFAULT_CACHE_TTL_S = 60.0
_CURSOR_KEY_LABEL = b"etl-platform dashboard cursor v1"


def derive_cursor_key(secret_key: str) -> bytes:
    """The cursor HMAC key: derived from `[api] secret_key`, which every api-server process shares,
    so a cursor issued by one process verifies in another; a label keeps it distinct from other uses."""
    if not secret_key:
        raise ValueError("[api] secret_key is empty: the dashboard cannot sign cursors")
    return hmac.new(secret_key.encode(), _CURSOR_KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class DashboardSettings:
    """Everything the app needs; secrets stay out of repr (settings may end up in a log line)."""

    ledger_conninfo: str = field(repr=False)
    redis_url: str | None = field(repr=False)
    cursor_key: bytes = field(repr=False)
    cache_ttl_s: float = DEFAULT_CACHE_TTL_S
    slow_request_s: float = 1.0
    keepalive_s: float = 15.0
    pool_min_size: int = 1
    pool_max_size: int = 8
    statement_timeout_ms: int = 15_000
    redis_timeout_s: float = 0.5

    @classmethod
    def from_airflow(cls) -> DashboardSettings:
        """`[etl_platform] ledger_conn_id`, `redis_conn_id` (empty: the Celery broker's Redis),
        `dashboard_cache_ttl`, and the cursor key from `[api] secret_key`."""
        from airflow.configuration import conf

        from etl_platform.common.redis_url import resolve_redis_url
        from etl_platform.hooks.postgres import EtlPostgresHook

        ledger_conn_id = conf.get(SECTION, "ledger_conn_id", fallback="") or ""
        if not ledger_conn_id:
            raise ValueError(f"[{SECTION}] ledger_conn_id is not set: the dashboard has no ledger to read")
        redis_conn_id = conf.get(SECTION, "redis_conn_id", fallback="") or None
        ttl = conf.getfloat(SECTION, "dashboard_cache_ttl", fallback=DEFAULT_CACHE_TTL_S)
        return cls(
            ledger_conninfo=EtlPostgresHook(ledger_conn_id, application_name="etl-dashboard").conninfo(),
            redis_url=resolve_redis_url(redis_conn_id),
            cursor_key=derive_cursor_key(conf.get("api", "secret_key", fallback="") or ""),
            cache_ttl_s=ttl,
        )

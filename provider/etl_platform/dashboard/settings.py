"""Where the dashboard reads the ledger and Redis, resolved from Airflow's configuration.

Resolved when the app starts (its lifespan), not at import: the plugin module is imported by every
Airflow process, and only the api-server needs these values. Built once and validated then: a bad value
is a ConfigError naming the setting, which the lifespan logs (the dashboard answers 503).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from etl_platform.common.checks import require_number
from etl_platform.common.errors import ConfigError

if TYPE_CHECKING:
    from airflow.configuration import AirflowConfigParser

SECTION = "etl_platform"
DEFAULT_CACHE_TTL_S = 60.0
_CURSOR_KEY_LABEL = b"etl-platform dashboard cursor v1"
_REDIS_SCHEMES = ("redis", "rediss", "unix")  # what redis.Redis.from_url accepts


def derive_cursor_key(secret_key: str) -> bytes:
    """The cursor HMAC key: derived from `[api] secret_key`, which every api-server process shares,
    so a cursor issued by one process verifies in another; a label keeps it distinct from other uses."""
    if not secret_key:
        raise ConfigError("[api] secret_key is empty: the dashboard cannot sign cursors")
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

    def __post_init__(self) -> None:
        # Messages never quote the conninfo, the URL or the key: they may hold passwords.
        if not _is_conninfo(self.ledger_conninfo):
            raise ConfigError(
                f"the ledger connection ([{SECTION}] ledger_conn_id) is not a valid libpq conninfo"
            )
        if self.redis_url is not None and (
            not isinstance(self.redis_url, str) or urlsplit(self.redis_url).scheme not in _REDIS_SCHEMES
        ):
            raise ConfigError(
                f"the dashboard's Redis ([{SECTION}] redis_conn_id, else the Celery broker) is not a "
                f"{'/'.join(_REDIS_SCHEMES)} URL"
            )
        if not isinstance(self.cursor_key, bytes) or len(self.cursor_key) < 16:
            raise ConfigError("the dashboard cursor_key must be at least 16 bytes (see derive_cursor_key)")
        require_number(f"[{SECTION}] dashboard_cache_ttl", self.cache_ttl_s, strict=True)
        require_number("dashboard slow_request_s", self.slow_request_s)
        require_number("dashboard keepalive_s", self.keepalive_s, strict=True)
        require_number("dashboard pool_min_size", self.pool_min_size, integer=True)
        require_number(
            "dashboard pool_max_size", self.pool_max_size, minimum=max(1, self.pool_min_size), integer=True
        )
        require_number("dashboard statement_timeout_ms", self.statement_timeout_ms, integer=True)
        require_number("dashboard redis_timeout_s", self.redis_timeout_s, strict=True)

    @classmethod
    def from_airflow(cls) -> DashboardSettings:
        """`[etl_platform] ledger_conn_id`, `redis_conn_id` (empty: the Celery broker's Redis),
        `dashboard_cache_ttl`, and the cursor key from `[api] secret_key`."""
        from airflow.configuration import conf

        from etl_platform.hooks.postgres import EtlPostgresHook
        from etl_platform.hooks.redis_url import resolve_redis_url

        ledger_conn_id = conf.get(SECTION, "ledger_conn_id", fallback="") or ""
        if not ledger_conn_id:
            raise ConfigError(f"[{SECTION}] ledger_conn_id is not set: the dashboard has no ledger to read")
        redis_conn_id = conf.get(SECTION, "redis_conn_id", fallback="") or None
        return cls(
            ledger_conninfo=EtlPostgresHook(ledger_conn_id, application_name="etl-dashboard").conninfo(),
            redis_url=resolve_redis_url(redis_conn_id),
            cursor_key=derive_cursor_key(conf.get("api", "secret_key", fallback="") or ""),
            cache_ttl_s=_cache_ttl(conf),
        )


def _is_conninfo(value: object) -> bool:
    """A non-empty libpq conninfo (key=value pairs or a postgresql:// URI) that libpq can parse."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        conninfo_to_dict(value)
    except ProgrammingError:
        return False
    return True


def _cache_ttl(conf: AirflowConfigParser) -> float:
    """`[etl_platform] dashboard_cache_ttl` as seconds; a value that is not a number names the setting."""
    raw = conf.get(SECTION, "dashboard_cache_ttl", fallback=None)
    if raw is None:
        return DEFAULT_CACHE_TTL_S
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"[{SECTION}] dashboard_cache_ttl must be a number of seconds, got {raw!r}"
        ) from None

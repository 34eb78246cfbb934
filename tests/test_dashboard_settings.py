"""Dashboard settings: validated when built (at the app's start), a bad value a ConfigError naming it.

No database or Redis here: building settings never connects. The from_airflow path with a real ledger
is in test_dashboard_api.py (test_settings_from_airflow_config).
"""

from __future__ import annotations

from typing import Any

import pytest

from etl_platform.common.errors import ConfigError, is_terminal
from etl_platform.dashboard.settings import DashboardSettings, derive_cursor_key

KEY = derive_cursor_key("test-secret-key")
CONNINFO = "host=127.0.0.1 port=5432 dbname=ledger user=etl password=s3cret"


def _settings(**overrides: Any) -> DashboardSettings:
    values: dict[str, Any] = {
        "ledger_conninfo": CONNINFO,
        "redis_url": "redis://127.0.0.1:1/0",
        "cursor_key": KEY,
    }
    return DashboardSettings(**{**values, **overrides})


def test_valid_settings_keep_secrets_out_of_repr() -> None:
    settings = _settings(redis_url="redis://:p%40ss@cache.example:6390/4")
    assert settings.cache_ttl_s == 60.0 and settings.pool_max_size == 8
    assert "s3cret" not in repr(settings) and "p%40ss" not in repr(settings)
    for url in (None, "rediss://cache.example:6380/0", "unix:///run/redis.sock?db=2"):
        assert _settings(redis_url=url).redis_url == url
    assert _settings(slow_request_s=0.0, pool_min_size=0, statement_timeout_ms=0).slow_request_s == 0.0


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"ledger_conninfo": "host=h port"}, "ledger_conn_id"),
        ({"ledger_conninfo": None}, "ledger_conn_id"),
        ({"ledger_conninfo": " "}, "ledger_conn_id"),
        ({"redis_url": "http://cache.example"}, "redis_conn_id"),
        ({"redis_url": ""}, "redis_conn_id"),
        ({"cursor_key": b"short"}, "cursor_key"),
        ({"cursor_key": "a str of 32 characters, not bytes"}, "cursor_key"),
        ({"cache_ttl_s": 0}, r"\[etl_platform\] dashboard_cache_ttl"),
        ({"cache_ttl_s": float("nan")}, "dashboard_cache_ttl"),
        ({"slow_request_s": -1}, "slow_request_s"),
        ({"keepalive_s": 0}, "keepalive_s"),
        ({"pool_min_size": -1}, "pool_min_size"),
        ({"pool_min_size": 4, "pool_max_size": 2}, "pool_max_size"),
        ({"pool_max_size": 0}, "pool_max_size"),
        ({"statement_timeout_ms": 1.5}, "statement_timeout_ms"),
        ({"redis_timeout_s": 0}, "redis_timeout_s"),
    ],
)
def test_bad_settings_name_the_setting(overrides: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name) as raised:
        _settings(**overrides)
    assert is_terminal(raised.value)
    assert "s3cret" not in str(raised.value)


def test_an_empty_secret_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[api\] secret_key"):
        derive_cursor_key("")


def test_from_airflow_names_a_cache_ttl_that_is_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_settings_ledger")
    monkeypatch.setenv("AIRFLOW_CONN_ETL_TEST_SETTINGS_LEDGER", "postgresql://etl:pw@127.0.0.1:5432/ledger")
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__REDIS_CONN_ID", "")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "one-secret")
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__DASHBOARD_CACHE_TTL", "soon")
    with pytest.raises(ConfigError, match=r"\[etl_platform\] dashboard_cache_ttl must be a number"):
        DashboardSettings.from_airflow()
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__DASHBOARD_CACHE_TTL", "-5")
    with pytest.raises(ConfigError, match=r"\[etl_platform\] dashboard_cache_ttl must be a number > 0"):
        DashboardSettings.from_airflow()
    monkeypatch.delenv("AIRFLOW__ETL_PLATFORM__DASHBOARD_CACHE_TTL")
    settings = DashboardSettings.from_airflow()
    assert settings.cache_ttl_s == 60.0 and settings.redis_url == "redis://127.0.0.1:1/0"

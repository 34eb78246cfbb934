"""Ledger settings: built once, validated then, every bad value a ConfigError (terminal) naming it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from airflow.sdk import conf

from etl_platform.common.checks import require_number
from etl_platform.common.errors import ConfigError, is_terminal
from etl_platform.ledger.settings import ChunkSettings, LedgerSettings


def test_defaults_are_the_recorders_and_listeners_pacing() -> None:
    chunks = ChunkSettings()
    assert (chunks.batch_rows, chunks.interval_s, chunks.max_buffered, chunks.close_timeout_s) == (
        50,
        1.0,
        20_000,
        10.0,
    )
    ledger = LedgerSettings("etl_ledger")
    assert (ledger.conn_id, ledger.connect_timeout_s) == ("etl_ledger", 3)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"batch_rows": 0}, "batch_rows"),
        ({"batch_rows": 2.5}, "batch_rows"),
        ({"batch_rows": True}, "batch_rows"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": math.inf}, "interval_s"),
        ({"interval_s": "1"}, "interval_s"),
        ({"max_buffered": 10, "batch_rows": 20}, "max_buffered"),
        ({"close_timeout_s": -1}, "close_timeout_s"),
        ({"close_timeout_s": math.nan}, "close_timeout_s"),
    ],
)
def test_bad_chunk_settings_name_the_setting(overrides: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name) as raised:
        ChunkSettings(**overrides)
    assert is_terminal(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"conn_id": ""}, "ledger_conn_id"),
        ({"conn_id": "  "}, "ledger_conn_id"),
        ({"conn_id": None}, "ledger_conn_id"),
        ({"conn_id": "l", "connect_timeout_s": 0}, "connect_timeout_s"),
        ({"conn_id": "l", "connect_timeout_s": 1.5}, "connect_timeout_s"),
    ],
)
def test_bad_ledger_settings_name_the_setting(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LedgerSettings(**kwargs)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        ChunkSettings().batch_rows = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        LedgerSettings("l").conn_id = "m"  # type: ignore[misc]


def test_require_number_bounds() -> None:
    require_number("x", 0)
    require_number("x", 1, minimum=1, integer=True)
    with pytest.raises(ConfigError, match=r"x must be a number > 0, got 0"):
        require_number("x", 0, strict=True)
    with pytest.raises(ConfigError, match=r"x must be an integer >= 2, got 1"):
        require_number("x", 1, minimum=2, integer=True)


def test_from_conf_reads_ledger_conn_id_from_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", raising=False)
    assert LedgerSettings.from_conf(conf) is None  # not set: no ledger
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "")
    assert LedgerSettings.from_conf(conf) is None
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_ledger")
    assert LedgerSettings.from_conf(conf) == LedgerSettings("etl_ledger")
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", " ")
    with pytest.raises(ConfigError, match=r"\[etl_platform\] ledger_conn_id"):
        LedgerSettings.from_conf(conf)

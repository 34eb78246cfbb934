"""The health spec (HealthConfig) and the tasks that build it: settings checked once at parse time,
templated fields kept as given, Redis URL resolution importable without Airflow. No servers needed."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from etl_platform.common.errors import ConfigError, TerminalError, is_terminal
from etl_platform.health.config import LEVELS, HealthConfig, default_checks, snapshot_checks
from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.operators.health import PlatformHealthSnapshotOperator
from etl_platform.sensors.performance import PerformanceCheckSensor

TASKS = [PerformanceCheckSensor, PlatformHealthSnapshotOperator]


@pytest.mark.parametrize(
    "queues", ["{{ params.queues }}", "extract, load", ["extract", "load"], ("extract",)]
)
@pytest.mark.parametrize("task_class", TASKS)
def test_templated_fields_are_assigned_unchanged(task_class: type, queues: Any) -> None:
    task = task_class(task_id="gate", postgres_conn_id="pg", queues=queues)
    assert list(task.template_fields) == ["queues"]
    for name in task.template_fields:
        assert getattr(task, name) is queues


@pytest.mark.parametrize("task_class", TASKS)
def test_rendered_queues_are_normalised_when_the_spec_is_built(task_class: type) -> None:
    task = task_class(task_id="gate", postgres_conn_id="pg", queues="{{ params.queues }}")
    task.queues = "['extract', 'load']"  # what rendering the template field gives
    config = task._config()
    assert config.queues == ("extract", "load")
    assert "queue_length" in config.checks


@pytest.mark.parametrize(
    "fields",
    [
        {"webhook_url": "{{ params.webhook }}", "message": "{{ ti.task_id }} is overloaded"},
        {"webhook_url": "http://alerts.example/hook", "message": "platform health alert"},
    ],
)
def test_notifier_templated_fields_are_assigned_unchanged(fields: dict[str, str]) -> None:
    notifier = PerformanceAlertNotifier(**fields)
    for name in notifier.template_fields:
        assert getattr(notifier, name) is fields[name]


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"checks": ("memory_usage_percent", "disk")}, "checks"),
        ({"checks": ("queue_length",)}, "queues"),
        ({"checks": ("db_connections",)}, "postgres_conn_id"),
        ({"checks": ("memory_usage_percent",), "check_timeout": 0}, "check_timeout"),
        ({"checks": ("memory_usage_percent",), "thresholds": {"load": (1, 2)}}, "thresholds"),
        (
            {"checks": ("memory_usage_percent",), "on_unavailable": {"memory_usage_percent": "x"}},
            "on_unavailable",
        ),
    ],
)
def test_spec_refuses_a_bad_setting_with_a_terminal_config_error_naming_it(
    kwargs: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError, match=setting) as raised:
        HealthConfig(**kwargs)
    assert isinstance(raised.value, TerminalError) and isinstance(raised.value, ValueError)
    assert is_terminal(raised.value)


@pytest.mark.parametrize("task_class", TASKS)
def test_tasks_refuse_a_bad_setting_at_parse_time_naming_task_and_setting(task_class: type) -> None:
    with pytest.raises(ConfigError, match=r"^gate: check_timeout must be a positive number"):
        task_class(task_id="gate", postgres_conn_id="pg", check_timeout=-1)


def test_spec_round_trips_through_its_serialized_form() -> None:
    config = HealthConfig(
        postgres_conn_id="pg",
        queues="extract,load",  # type: ignore[arg-type]
        thresholds={"queue_length": {"warning": 10, "critical": 20}},
        on_unavailable={"queue_length": "fail"},
    )
    assert HealthConfig.from_dict(config.to_dict()) == config
    assert config.thresholds["queue_length"] == (10.0, 20.0)
    assert config.behaviour("queue_length") == "fail" and config.behaviour("db_connections") == "warn"


def test_default_checks_of_the_sensor_the_cli_and_the_snapshot() -> None:
    assert LEVELS == ("ok", "warning", "critical")
    assert default_checks(()) == ("db_connections", "avg_response_time", "memory_usage_percent")
    assert default_checks("extract")[-1] == "queue_length"
    assert snapshot_checks(None, ()) == ("memory_usage_percent",)
    assert snapshot_checks("pg", ("extract",)) == (
        "memory_usage_percent",
        "db_connections",
        "avg_response_time",
        "queue_length",
    )
    sensor = PerformanceCheckSensor(task_id="gate", postgres_conn_id="pg")
    assert sensor._config().checks == default_checks(())


def test_redis_url_resolution_imports_no_airflow() -> None:
    """The dashboard and the listener import it; Airflow's lookups wait until a URL is asked for."""
    code = (
        "import sys, etl_platform.hooks.redis_url; print(any(m.startswith('airflow') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Platform-health gating against real PostgreSQL connections and a real Redis broker."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from etl_platform.health.config import HealthConfig
from etl_platform.health.evaluate import HealthReport, Sources, evaluate
from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.sensors.performance import PerformanceCheckSensor
from etl_platform.triggers.performance import PerformanceCheckTrigger
from harness import run_dag, task_outcomes, xcom_value

QUEUE = "etl_health_test"


def _run(config: HealthConfig, sources: Sources) -> HealthReport:
    async def resolve(_: HealthConfig) -> Sources:
        return sources

    return asyncio.run(evaluate(config, resolve))


def _reading(report: HealthReport, metric: str) -> Any:
    return next(r for r in report.readings if r.metric == metric)


def _connection_levels(pg_server: Any) -> tuple[float, float]:
    """Warning 4 and critical 8 connections above what is in use now (max_connections from the server)."""
    config = HealthConfig(postgres_conn_id="x", checks=("db_connections",))
    now = _reading(_run(config, Sources(postgres=pg_server.conninfo("postgres"))), "db_connections")
    used, usable = (int(x) for x in now.detail.split(" usable")[0].split(" of "))
    with pg_server.connect() as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
        ).fetchone()
    assert row is not None and usable == row[0] - 0  # read from the server, not assumed
    per_conn = 100.0 / usable
    return (used + 4) * per_conn - per_conn / 2, (used + 8) * per_conn - per_conn / 2


@contextmanager
def _open_connections(pg_server: Any, count: int) -> Iterator[list[psycopg.Connection[Any]]]:
    conns = [pg_server.connect() for _ in range(count)]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def test_connections_move_the_level_from_ok_to_warning_to_critical(pg_server: Any) -> None:
    warning, critical = _connection_levels(pg_server)
    config = HealthConfig(
        postgres_conn_id="x", checks=("db_connections",), thresholds={"db_connections": (warning, critical)}
    )
    sources = Sources(postgres=pg_server.conninfo("postgres"))
    assert _run(config, sources).level == "ok"
    with _open_connections(pg_server, 5):
        assert _run(config, sources).level == "warning"
        with _open_connections(pg_server, 4):
            report = _run(config, sources)
            assert report.level == "critical"
            assert _reading(report, "db_connections").value >= critical
    assert _run(config, sources).level == "ok"


def test_celery_queue_length_counts_priority_sub_queues(redis_db: Any) -> None:
    config = HealthConfig(
        checks=("queue_length",), queues=(QUEUE, "other"), thresholds={"queue_length": (5, 10)}
    )
    sources = Sources(redis=redis_db.url)
    assert _run(config, sources).level == "ok"
    redis_db.client.rpush(QUEUE, *["m"] * 3)
    redis_db.client.rpush(QUEUE + "\x06\x163", *["p"] * 3)  # kombu priority step 3
    report = _run(config, sources)
    assert (report.level, _reading(report, "queue_length").value) == ("warning", 6.0)
    redis_db.client.rpush("other\x06\x169", *["p"] * 4)
    assert _run(config, sources).level == "critical"
    redis_db.client.delete(QUEUE, QUEUE + "\x06\x163", "other\x06\x169")
    assert _run(config, sources).level == "ok"


@pytest.mark.parametrize(
    ("behaviour", "level", "failed"),
    [("fail", "ok", True), ("warn", "warning", False), ("ignore", "ok", False)],
)
def test_unavailable_sources_follow_on_unavailable_within_bounded_time(
    behaviour: str, level: str, failed: bool
) -> None:
    config = HealthConfig(
        postgres_conn_id="x",
        checks=("db_connections", "queue_length", "memory_usage_percent"),
        queues=(QUEUE,),
        on_unavailable={"db_connections": behaviour, "queue_length": behaviour},
        check_timeout=2,
    )
    started = time.perf_counter()
    report = _run(
        config, Sources(postgres="host=127.0.0.1 port=1 user=x dbname=x", redis="redis://127.0.0.1:1/0")
    )
    assert time.perf_counter() - started < 5
    assert bool(report.failed) is failed
    if failed:
        assert any(f.startswith("db_connections: PostgreSQL unreachable") for f in report.failed)
        assert any(f.startswith("queue_length: Redis broker unreachable") for f in report.failed)
    else:
        assert report.level == level
    assert _reading(report, "memory_usage_percent").value is not None


def test_memory_reading_is_a_percentage() -> None:
    report = _run(HealthConfig(checks=("memory_usage_percent",)), Sources())
    reading = _reading(report, "memory_usage_percent")
    assert 0 < reading.value < 100 and reading.detail.startswith(("cgroup", "host"))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"thresholds": {"db_connections": {"warning": 90, "critical": 80}}},
            r"warning 90 is above critical 80",
        ),
        ({"thresholds": {"queue_length": {"warning": -1, "critical": 5}}}, r"queue_length.*non-negative"),
        ({"thresholds": {"cpu": {"warning": 1, "critical": 2}}}, r"unknown metric 'cpu'"),
        ({"checks": ["disk"]}, r"checks \['disk'\] are unknown"),
        ({"on_unavailable": {"db_connections": "explode"}}, r"on_unavailable\['db_connections'\]"),
        ({"checks": ["queue_length"]}, r"queue_length check needs `queues`"),
    ],
)
def test_nonsense_settings_are_refused_at_parse_time(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=f"gate: .*{pattern}"):
        PerformanceCheckSensor(task_id="gate", postgres_conn_id="pg", **kwargs)


def test_trigger_round_trips_through_serialization() -> None:
    config = HealthConfig(postgres_conn_id="pg", queues=(QUEUE,), thresholds={"queue_length": (1, 2)})
    trigger = PerformanceCheckTrigger(
        config.to_dict(), poke_interval=2.5, deadline=1234.5, wait_on_warning=True
    )
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt == trigger
    assert HealthConfig.from_dict(rebuilt.config) == config


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()


def test_webhook_alert_carries_the_readings(webhook: str) -> None:
    readings = [
        {"metric": "queue_length", "value": 612.0, "warning": 100.0, "critical": 500.0, "level": "critical"}
    ]
    assert PerformanceAlertNotifier(webhook_url=webhook).send("critical", "queue_length=612", readings)
    assert _Hook.received[0]["level"] == "critical" and _Hook.received[0]["readings"] == readings
    assert not PerformanceAlertNotifier(webhook_url="http://127.0.0.1:1/x", timeout=1).send(
        "warning", "m", []
    )


# -- through Airflow ------------------------------------------------------------------------------


@contextmanager
def _settings(**settings: Any) -> Iterator[None]:
    os.environ["ETL_TEST_HEALTH"] = json.dumps(settings)
    try:
        yield
    finally:
        os.environ.pop("ETL_TEST_HEALTH", None)


@pytest.mark.airflow
@pytest.mark.parametrize("mode", ["deferred", "poke", "reschedule"])
def test_sensor_waits_while_critical_and_finishes_when_connections_close(
    pg_server: Any, webhook: str, mode: str
) -> None:
    warning, critical = _connection_levels(pg_server)
    thresholds = {"db_connections": {"warning": warning, "critical": critical}}
    conns = {"etl_test_pg": pg_server.uri("postgres")}
    held = [pg_server.connect() for _ in range(12)]
    alerted_at: list[float] = []

    def close_after_the_critical_alert() -> None:
        deadline = time.monotonic() + 120
        while not _Hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        alerted_at.append(time.perf_counter())
        time.sleep(2.0)  # the gate must still be waiting now
        for conn in held:
            conn.close()

    closer = threading.Thread(target=close_after_the_critical_alert, daemon=True)
    closer.start()
    try:
        with _settings(thresholds=thresholds, webhook_url=webhook):
            run = run_dag(f"health_gate_{mode}", conn_env=conns)
    finally:
        for conn in held:
            conn.close()
        closer.join(5)
    finished = time.perf_counter()
    assert task_outcomes(run)["gate"].state == "success"
    assert alerted_at and finished - alerted_at[0] >= 2.0  # it waited until the connections closed
    readings = xcom_value(run, "gate")
    # Closing twelve connections takes a moment: the gate may catch the way down at warning.
    assert readings["level"] in ("ok", "warning")
    assert next(r for r in readings["readings"] if r["metric"] == "db_connections")["value"] < critical
    # One critical alert while it waited; a warning alert only when it finished at warning.
    expected_alerts = ["critical", "warning"] if readings["level"] == "warning" else ["critical"]
    assert [a["level"] for a in _Hook.received] == expected_alerts
    assert any(
        r["metric"] == "db_connections" and r["level"] == "critical" for r in _Hook.received[0]["readings"]
    )


@pytest.mark.airflow
def test_sensor_proceeds_on_warning_with_an_alert(pg_server: Any, webhook: str) -> None:
    warning, critical = _connection_levels(pg_server)
    with (
        _open_connections(pg_server, 5),
        _settings(
            thresholds={"db_connections": {"warning": warning, "critical": critical}}, webhook_url=webhook
        ),
    ):
        run = run_dag("health_gate_deferred", conn_env={"etl_test_pg": pg_server.uri("postgres")})
    assert task_outcomes(run)["gate"].state == "success"
    assert xcom_value(run, "gate")["level"] == "warning"
    assert [a["level"] for a in _Hook.received] == ["warning"]


@pytest.mark.airflow
def test_sensor_times_out_naming_the_breach(pg_server: Any) -> None:
    with _settings(thresholds={"db_connections": {"warning": 0, "critical": 0}}, timeout=2):
        run = run_dag("health_gate_deferred", conn_env={"etl_test_pg": pg_server.uri("postgres")})
    assert task_outcomes(run)["gate"].state == "failed"


def test_timeout_report_names_each_breach_with_value_and_thresholds() -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    sensor = PerformanceCheckSensor(task_id="gate", postgres_conn_id="pg", timeout=5)
    report = {
        "level": "critical",
        "failed": [],
        "readings": [
            {
                "metric": "db_connections",
                "value": 96.5,
                "warning": 80.0,
                "critical": 95.0,
                "level": "critical",
                "detail": "94 of 97 usable connections",
            },
            {
                "metric": "memory_usage_percent",
                "value": 40.0,
                "warning": 75.0,
                "critical": 90.0,
                "level": "ok",
                "detail": "host",
            },
        ],
    }
    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor.execute_complete({}, {"status": "timeout", "report": report})  # type: ignore[arg-type]
    message = str(raised.value)
    assert "db_connections=96.500 (critical; warning 80, critical 95" in message
    assert "memory_usage_percent" not in message


@pytest.mark.airflow
def test_unknown_connection_fails_the_gate_without_hanging(pg_server: Any) -> None:
    started = time.perf_counter()
    with _settings(timeout=30):
        run = run_dag("health_gate_poke", conn_env={})
    # on_unavailable defaults to warn: the gate proceeds at warning level instead of hanging
    assert task_outcomes(run)["gate"].state == "success"
    assert xcom_value(run, "gate")["level"] == "warning"
    assert time.perf_counter() - started < 30


def test_pgbouncer_pools_report_clients_waiting(pg_server: Any) -> None:
    from harness.pgbouncer import running_pgbouncer

    with running_pgbouncer(pg_server, pool_size=1) as bouncer:
        config = HealthConfig(
            pgbouncer_conn_id="pgb",
            checks=("memory_usage_percent",),
            thresholds={"pgbouncer_clients_waiting": (1, 3)},
        )
        sources = Sources(pgbouncer=bouncer.conninfo("pgbouncer"))
        idle = _run(config, sources)
        assert _reading(idle, "pgbouncer_clients_waiting").value == 0
        assert _reading(idle, "pgbouncer_clients_waiting").level == "ok"
        # One server connection, three clients in transactions: two of them wait in PgBouncer.
        sleepers = [threading.Thread(target=_sleep_through, args=(bouncer.conninfo(),)) for _ in range(3)]
        for thread in sleepers:
            thread.start()
        time.sleep(0.8)
        busy = _run(config, sources)
        for thread in sleepers:
            thread.join()
    waiting = _reading(busy, "pgbouncer_clients_waiting")
    assert waiting.value == 2 and waiting.level == "warning", waiting
    assert _reading(busy, "pgbouncer_max_wait").value is not None


def _sleep_through(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT pg_sleep(2)")

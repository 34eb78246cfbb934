"""Platform-health gating against real PostgreSQL connections and a real Redis broker."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

from etl_platform.health import probes
from etl_platform.health.config import HealthConfig
from etl_platform.health.evaluate import HealthReport, Sources, evaluate
from etl_platform.health.sources import resolve_source
from etl_platform.hooks.redis_url import celery_broker_redis_url, redis_url_of_connection
from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.sensors.performance import PerformanceCheckSensor
from etl_platform.triggers.performance import PerformanceCheckTrigger
from harness import connections_env, run_dag, task_outcomes, xcom_value

QUEUE = "etl_health_test"


def _run(config: HealthConfig, sources: Sources) -> HealthReport:
    return asyncio.run(evaluate(config, sources.resolve))


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


def test_connections_move_the_level_from_ok_to_warning_to_critical(quiet_pg: Any) -> None:
    warning, critical = _connection_levels(quiet_pg)
    config = HealthConfig(
        postgres_conn_id="x", checks=("db_connections",), thresholds={"db_connections": (warning, critical)}
    )
    sources = Sources(postgres=quiet_pg.conninfo("postgres"))
    assert _run(config, sources).level == "ok"
    with _open_connections(quiet_pg, 5):
        assert _run(config, sources).level == "warning"
        with _open_connections(quiet_pg, 4):
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
    quiet_pg: Any, webhook: str, mode: str
) -> None:
    warning, critical = _connection_levels(quiet_pg)
    thresholds = {"db_connections": {"warning": warning, "critical": critical}}
    conns = {"etl_test_pg": quiet_pg.uri("postgres")}
    held = [quiet_pg.connect() for _ in range(12)]
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
        with _settings(thresholds=thresholds):
            run = run_dag(f"health_gate_{mode}", conn_env=conns, conf={"webhook_url": webhook})
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
def test_sensor_proceeds_on_warning_with_an_alert(quiet_pg: Any, webhook: str) -> None:
    warning, critical = _connection_levels(quiet_pg)
    with (
        _open_connections(quiet_pg, 5),
        _settings(thresholds={"db_connections": {"warning": warning, "critical": critical}}),
    ):
        run = run_dag(
            "health_gate_deferred",
            conn_env={"etl_test_pg": quiet_pg.uri("postgres")},
            conf={"webhook_url": webhook},
        )
    assert task_outcomes(run)["gate"].state == "success"
    assert xcom_value(run, "gate")["level"] == "warning"
    assert [a["level"] for a in _Hook.received] == ["warning"]


@pytest.mark.airflow
def test_sensor_times_out_naming_the_breach(pg_server: Any, capfd: Any) -> None:
    with _settings(thresholds={"db_connections": {"warning": 0, "critical": 0}}, timeout=2):
        run = run_dag("health_gate_deferred", conn_env={"etl_test_pg": pg_server.uri("postgres")})
    assert task_outcomes(run)["gate"].state == "failed"
    out = capfd.readouterr().out  # the task log: dag.test() runs the task in this process
    assert "AirflowSensorTimeout" in out
    assert re.search(
        r"platform still overloaded after 2 s; breaching: db_connections=\d+\.\d{3} "
        r"\(critical; warning 0, critical 0; \d+ of \d+ usable connections\)",
        out,
    )


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
    # The two waiters have waited about 0.8 s: all of it in maxwait_us (maxwait holds whole seconds).
    assert 0.5 <= _reading(busy, "pgbouncer_max_wait").value < 2.0, _reading(busy, "pgbouncer_max_wait")


def _sleep_through(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT pg_sleep(2)")


# -- shared by tests/test_health_*.py: local servers that misbehave on purpose ---------------------


@contextmanager
def _tcp_server(handle: Callable[[socket.socket], list[socket.socket]]) -> Iterator[int]:
    """A loopback TCP server; `handle` takes each accepted connection and returns the sockets to close."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                client = server.accept()[0]
            except (TimeoutError, OSError):
                continue
            sockets.extend(handle(client))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for sock in sockets:
            sock.close()
        server.close()


def silent_listener() -> AbstractContextManager[int]:
    """A TCP port that accepts connections and never answers (a hung database or broker)."""
    return _tcp_server(lambda client: [client])


def delaying_proxy(host: str, port: int, delay: float) -> AbstractContextManager[int]:
    """A TCP proxy that holds every server reply back `delay` seconds (a slow, overloaded server).

    `host` may be a PostgreSQL unix-socket directory (the embedded server listens on no TCP port):
    the proxy then relays to `<host>/.s.PGSQL.<port>`, never to a default address."""

    def pump(src: socket.socket, dst: socket.socket, wait: float) -> None:
        try:
            while data := src.recv(65536):
                if wait:
                    time.sleep(wait)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def relay(client: socket.socket) -> list[socket.socket]:
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
        else:
            upstream = socket.create_connection((host, port))
        threading.Thread(target=pump, args=(client, upstream, 0.0), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, delay), daemon=True).start()
        return [client, upstream]

    return _tcp_server(relay)


# -- item: one bad connection id costs only its own checks ----------------------------------------


def _resolved(config: HealthConfig, conn_env: dict[str, str]) -> HealthReport:
    with connections_env(conn_env):
        return asyncio.run(evaluate(config, resolve_source))


def test_bad_redis_connection_id_costs_only_the_queue_check(pg_server: Any) -> None:
    config = HealthConfig(
        postgres_conn_id="etl_test_pg",
        redis_conn_id="etl_no_such_redis",
        queues=(QUEUE,),
        checks=("db_connections", "memory_usage_percent", "queue_length"),
        on_unavailable={"queue_length": "warn"},
    )
    report = _resolved(config, {"etl_test_pg": pg_server.uri("postgres")})
    assert not report.failed
    queue = _reading(report, "queue_length")
    assert (queue.value, queue.level) == (None, "warning") and "'etl_no_such_redis'" in queue.detail
    assert _reading(report, "db_connections").value > 0  # real connections: this test's at least
    assert 0 < _reading(report, "memory_usage_percent").value < 100


def test_bad_postgres_connection_id_with_fail_names_the_check_and_the_connection() -> None:
    config = HealthConfig(
        postgres_conn_id="etl_no_such_pg",
        checks=("db_connections", "memory_usage_percent"),
        on_unavailable={"db_connections": "fail"},
    )
    report = _resolved(config, {})
    assert len(report.failed) == 1
    assert report.failed[0].startswith("db_connections: ") and "'etl_no_such_pg'" in report.failed[0]
    assert _reading(report, "memory_usage_percent").value is not None


# -- item: Redis addresses from an Airflow connection and from [celery] broker_url -----------------


def test_redis_address_of_an_airflow_connection() -> None:
    from airflow.sdk import Connection

    plain = Connection(conn_id="r", conn_type="redis", host="10.0.0.5", port=6380, schema="3")
    assert redis_url_of_connection(plain) == "redis://10.0.0.5:6380/3"
    secret = Connection(
        conn_id="r", conn_type="redis", host="h", password="p@ss/w", extra=json.dumps({"db": 5, "ssl": True})
    )
    assert redis_url_of_connection(secret) == "rediss://:p%40ss%2Fw@h:6379/5"
    acl = Connection(conn_id="r", conn_type="redis", host="h", login="etl", password="pw")
    assert redis_url_of_connection(acl) == "redis://etl:pw@h:6379/0"


def test_queue_check_reads_the_broker_named_by_connection_or_by_celery_broker_url(redis_db: Any) -> None:
    redis_db.client.rpush(QUEUE, *["m"] * 2)
    redis_db.client.rpush(QUEUE + "\x06\x169", "p")
    by_conn = HealthConfig(checks=("queue_length",), queues=(QUEUE,), redis_conn_id="etl_test_redis")
    report = _resolved(by_conn, {"etl_test_redis": redis_db.url})  # an Airflow connection URI
    assert _reading(report, "queue_length").value == 3.0
    by_broker = HealthConfig(checks=("queue_length",), queues=(QUEUE,))
    os.environ["AIRFLOW__CELERY__BROKER_URL"] = redis_db.url
    try:
        assert celery_broker_redis_url() == redis_db.url
        assert _reading(_resolved(by_broker, {}), "queue_length").value == 3.0
        os.environ["AIRFLOW__CELERY__BROKER_URL"] = "amqp://guest@127.0.0.1:5672//"
        assert celery_broker_redis_url() is None
        missing = _reading(_resolved(by_broker, {}), "queue_length")
        assert missing.value is None and "no Redis broker configured" in missing.detail
    finally:
        os.environ.pop("AIRFLOW__CELERY__BROKER_URL", None)


# -- item: avg_response_time ------------------------------------------------------------------------


def test_avg_response_time_without_the_extension_is_a_probe_latency_that_crosses_thresholds(
    pg_server: Any,
) -> None:
    """The test server has no pg_stat_statements preloaded: the reading is the probe query's latency.

    A proxy holding every server reply back 250 ms makes the server slow as seen from the check;
    the warning threshold (120 ms) sits between the direct and the delayed latency, with room for a
    busy CI machine on both sides.
    """
    config = HealthConfig(
        postgres_conn_id="x", checks=("avg_response_time",), thresholds={"avg_response_time": (0.12, 10)}
    )
    direct = _reading(_run(config, Sources(postgres=pg_server.conninfo("postgres"))), "avg_response_time")
    assert direct.detail.startswith("probe query latency") and 0 < direct.value < 0.12
    assert direct.level == "ok"
    with delaying_proxy(pg_server.host, pg_server.port, 0.25) as port:
        slow = _reading(
            _run(
                config, Sources(postgres=f"host=127.0.0.1 port={port} user={pg_server.user} dbname=postgres")
            ),
            "avg_response_time",
        )
    assert slow.detail.startswith("probe query latency") and 0.25 <= slow.value < 2.0
    assert slow.level == "warning"


# -- item: timeout report from the real trigger ----------------------------------------------------


def test_trigger_past_its_deadline_reports_the_real_critical_reading(pg_server: Any) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    config = HealthConfig(
        postgres_conn_id="etl_test_pg",
        checks=("db_connections", "memory_usage_percent"),
        thresholds={"db_connections": (0, 0), "memory_usage_percent": (99, 100)},
    )
    trigger = PerformanceCheckTrigger(
        config.to_dict(), poke_interval=0.1, deadline=time.time() - 1, alerted=["critical"]
    )
    with connections_env({"etl_test_pg": pg_server.uri("postgres")}):
        event = asyncio.run(trigger.run().__anext__())  # type: ignore[attr-defined]
    assert event.payload["status"] == "timeout"
    reading = next(r for r in event.payload["report"]["readings"] if r["metric"] == "db_connections")
    assert (
        reading["level"] == "critical" and reading["value"] > 0 and "usable connections" in reading["detail"]
    )
    sensor = PerformanceCheckSensor(
        task_id="gate", postgres_conn_id="etl_test_pg", thresholds={"db_connections": (0, 0)}, timeout=7
    )
    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor.execute_complete({}, event.payload)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "still overloaded after 7 s" in message
    assert f"db_connections={reading['value']:.3f} (critical; warning 0, critical 0;" in message
    assert "memory_usage_percent" not in message


# -- item: bounded time against a source that accepts and never answers -----------------------------


@pytest.mark.parametrize("source", ["postgres", "redis"])
@pytest.mark.parametrize("behaviour", ["fail", "warn", "ignore"])
def test_hanging_source_gives_its_on_unavailable_outcome_within_check_timeout(
    source: str, behaviour: str
) -> None:
    check = "db_connections" if source == "postgres" else "queue_length"
    config = HealthConfig(
        postgres_conn_id="x",
        checks=(check, "memory_usage_percent"),
        queues=(QUEUE,),
        on_unavailable={check: behaviour},
        check_timeout=1.0,
    )
    with silent_listener() as port:
        sources = Sources(
            postgres=f"host=127.0.0.1 port={port} user=x dbname=x", redis=f"redis://127.0.0.1:{port}/0"
        )
        started = time.perf_counter()
        report = _run(config, sources)
        elapsed = time.perf_counter() - started
    assert 0.9 <= elapsed < 1.0 + 1.5, elapsed  # it waited for the silent server, and not much longer
    reading = _reading(report, check)
    assert reading.value is None
    if behaviour == "fail":
        assert len(report.failed) == 1 and report.failed[0].startswith(f"{check}: ")
    else:
        assert not report.failed
        assert report.level == ("warning" if behaviour == "warn" else "ok")
        assert reading.level == ("warning" if behaviour == "warn" else "unavailable")
    assert _reading(report, "memory_usage_percent").value is not None


# -- item: the triggerer's event loop is never blocked ----------------------------------------------


def test_trigger_never_blocks_the_event_loop_while_all_four_checks_run(pg_server: Any, redis_db: Any) -> None:
    config = HealthConfig(
        postgres_conn_id="etl_test_pg",
        redis_conn_id="etl_test_redis",
        queues=(QUEUE, "other"),
        thresholds={"queue_length": (0, 0)},  # 0 >= 0: critical, so the loop keeps reading
        on_unavailable=dict.fromkeys(("db_connections", "avg_response_time", "queue_length"), "fail"),
    )
    trigger = PerformanceCheckTrigger(
        config.to_dict(), poke_interval=0.05, deadline=time.time() + 3, alerted=["critical"]
    )

    async def main() -> tuple[Any, float, int]:
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                expected = time.perf_counter() + 0.005
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - expected)

        ticking = asyncio.create_task(ticker())
        event = await trigger.run().__anext__()  # type: ignore[attr-defined]
        stop.set()
        await ticking
        return event, max(lags), len(lags)

    conns = {"etl_test_pg": pg_server.uri("postgres"), "etl_test_redis": redis_db.url}
    with connections_env(conns):
        event, max_lag, ticks = asyncio.run(main())
    assert event.payload["status"] == "timeout"
    readings = {r["metric"]: r["value"] for r in event.payload["report"]["readings"]}
    assert set(readings) == {"db_connections", "avg_response_time", "memory_usage_percent", "queue_length"}
    assert all(value is not None for value in readings.values()), readings
    assert ticks > 100  # the ticker ran throughout the 3 s of checks
    # A blocking connect, sleep or first import shows as 100 ms and more; scheduler noise on a busy
    # 2-core machine can reach a few tens of milliseconds.
    assert max_lag < 0.1, f"event loop blocked for {max_lag * 1000:.1f} ms"


# -- item: escalation while deferred ------------------------------------------------------------------


def test_trigger_hands_back_when_the_level_rises_above_what_was_alerted(pg_server: Any) -> None:
    config = HealthConfig(
        postgres_conn_id="etl_test_pg", checks=("db_connections",), thresholds={"db_connections": (0, 0)}
    )

    def first_event(alerted: list[str]) -> dict[str, Any]:
        trigger = PerformanceCheckTrigger(
            config.to_dict(),
            poke_interval=0.1,
            deadline=time.time() + 0.5,
            wait_on_warning=True,
            alerted=alerted,
        )
        with connections_env({"etl_test_pg": pg_server.uri("postgres")}):
            return asyncio.run(trigger.run().__anext__()).payload  # type: ignore[attr-defined, no-any-return]

    escalated = first_event(["warning"])
    assert escalated["status"] == "escalated" and escalated["report"]["level"] == "critical"
    assert first_event(["warning", "critical"])["status"] == "timeout"  # critical already alerted: waits


# -- item: cgroup memory working set ------------------------------------------------------------------

MiB = 2**20


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_cgroup_v2_memory_leaves_out_inactive_page_cache(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "memory.current": f"{600 * MiB}\n",
            "memory.max": f"{1024 * MiB}\n",
            "memory.stat": f"anon {300 * MiB}\nfile {290 * MiB}\nactive_file {90 * MiB}\n"
            f"inactive_file {200 * MiB}\nslab 1234\n",
        },
    )
    value, detail = probes.memory_usage_percent(root, host_total=8192 * MiB)
    assert value == pytest.approx(100 * 400 / 1024) and detail.startswith("cgroup working set: 400 of 1024")


def test_cgroup_v1_memory_leaves_out_inactive_page_cache(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "memory/memory.usage_in_bytes": f"{800 * MiB}\n",
            "memory/memory.limit_in_bytes": f"{1024 * MiB}\n",
            "memory/memory.stat": f"cache {400 * MiB}\ninactive_file {100 * MiB}\n"
            f"total_inactive_file {300 * MiB}\n",
        },
    )
    assert probes.cgroup_usage(root, 8192 * MiB) == (500 * MiB, 1024 * MiB)


@pytest.mark.parametrize("limit", ["max\n", f"{16384 * MiB}\n"])
def test_cgroup_without_a_limit_below_the_host_falls_back_to_the_host(tmp_path: Path, limit: str) -> None:
    root = _write(tmp_path, {"memory.current": f"{600 * MiB}\n", "memory.max": limit, "memory.stat": ""})
    assert probes.cgroup_usage(root, 8192 * MiB) is None
    value, detail = probes.memory_usage_percent(root, host_total=8192 * MiB)
    assert detail.startswith("host:") and 0 < value < 100


# -- item: parse-time refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"thresholds": {"queue_length": {"warning": math.nan, "critical": 5}}},
            r"queue_length'\]\.warning.*finite",
        ),
        ({"thresholds": {"avg_response_time": (1, math.inf)}}, r"avg_response_time'\]\.critical.*finite"),
        ({"check_timeout": True}, r"check_timeout must be a positive number.*True"),
        ({"check_timeout": "5"}, r"check_timeout must be a positive number.*'5'"),
        ({"check_timeout": math.inf}, r"check_timeout must be a positive number.*inf"),
        ({"thresholds": {"db_connections": (80, 120)}}, r"db_connections'\]\.critical is a percentage.*120"),
        (
            {"thresholds": {"memory_usage_percent": {"warning": 101}}},
            r"memory_usage_percent'\]\.warning.*101",
        ),
        ({"on_unavailable": {"pgbouncer": "fail"}}, r"on_unavailable\['pgbouncer'\].*no pgbouncer_conn_id"),
        ({"on_unavailable": {"pgbouncer": "explode"}}, r"on_unavailable\['pgbouncer'\] = 'explode'"),
    ],
)
def test_more_nonsense_settings_are_refused_naming_the_setting(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=f"gate: .*{pattern}"):
        PerformanceCheckSensor(task_id="gate", postgres_conn_id="pg", **kwargs)


@pytest.mark.parametrize(
    ("rendered", "queues"),
    [
        ("extract, load", ("extract", "load")),
        ("extract", ("extract",)),
        ("['extract', 'load']", ("extract", "load")),
        (["extract", "load"], ("extract", "load")),
    ],
)
def test_templated_queues_are_queue_names_not_characters(rendered: Any, queues: tuple[str, ...]) -> None:
    sensor = PerformanceCheckSensor(task_id="gate", postgres_conn_id="pg", queues="{{ params.queues }}")
    assert sensor._config().queues == ("{{ params.queues }}",)  # parse time: one (templated) name
    sensor.queues = rendered  # what rendering the template field gives
    assert sensor._config().queues == queues


def test_on_unavailable_may_name_pgbouncer() -> None:
    config = HealthConfig(
        pgbouncer_conn_id="pgb", checks=("memory_usage_percent",), on_unavailable={"pgbouncer": "fail"}
    )
    report = _run(config, Sources(pgbouncer="host=127.0.0.1 port=1 user=x dbname=pgbouncer"))
    assert len(report.failed) == 1 and report.failed[0].startswith("pgbouncer: PostgreSQL unreachable")
    ignored = HealthConfig(
        pgbouncer_conn_id="pgb", checks=("memory_usage_percent",), on_unavailable={"pgbouncer": "ignore"}
    )
    report = _run(ignored, Sources(pgbouncer="host=127.0.0.1 port=1 user=x dbname=pgbouncer"))
    assert not report.failed and report.level == "ok"

"""Platform-health gating through Airflow: dag.test() runs of tests/dags/health_dags.py, and StatsD."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from etl_platform.sensors.performance import ALERTED_KEY
from harness import run_dag, task_outcomes, xcom_value
from harness.statsd import dags_test_with_statsd
from test_health import QUEUE, _connection_levels, _Hook, _settings, silent_listener, webhook

pytestmark = pytest.mark.airflow
__all__ = ["webhook"]  # the fixture, shared with tests/test_health.py


def _when(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "timed out waiting"


def _alerts() -> list[str]:
    return [a["level"] for a in _Hook.received]


def _stored_alerted_levels() -> list[Any]:
    """The sensor's task_state_store values, read from the metadata DB (test side)."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskStateStoreModel).where(TaskStateStoreModel.key == ALERTED_KEY))
        return [(row.dag_id, row.task_id, json.loads(row.value)) for row in rows]


def test_reschedule_alerts_each_level_once_per_dag_run_task(quiet_pg: Any, webhook: str, capfd: Any) -> None:
    """Each reschedule runs a fresh copy of the task (in production a fresh process): the alerted
    levels must come from task_state_store, or every poke at critical would alert again."""
    warning, critical = _connection_levels(quiet_pg)
    held = [quiet_pg.connect() for _ in range(12)]
    stored: list[Any] = []

    def release_after_three_pokes() -> None:
        _when(lambda: bool(_Hook.received))
        time.sleep(3.0)  # more pokes at critical (dag.test re-runs a rescheduled task about every 1 s)
        stored.extend(_stored_alerted_levels())
        for conn in held:
            conn.close()

    closer = threading.Thread(target=release_after_three_pokes, daemon=True)
    closer.start()
    try:
        with _settings(thresholds={"db_connections": {"warning": warning, "critical": critical}}):
            run = run_dag(
                "health_gate_reschedule",
                conn_env={"etl_test_pg": quiet_pg.uri("postgres")},
                conf={"webhook_url": webhook},
            )
    finally:
        for conn in held:
            conn.close()
        closer.join(5)
    out = capfd.readouterr().out
    assert task_outcomes(run)["gate"].state == "success"
    assert out.count("platform health critical") >= 2  # it poked at critical again and again...
    assert _alerts().count("critical") == 1  # ...and alerted once
    assert ("health_gate_reschedule", "gate", ["critical"]) in stored


def test_bad_postgres_connection_with_fail_fails_the_gate_naming_check_and_connection(capfd: Any) -> None:
    with _settings(postgres_conn_id="etl_no_such_pg", on_unavailable={"db_connections": "fail"}, retries=2):
        run = run_dag("health_gate_poke", conn_env={})
    outcome = task_outcomes(run)["gate"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # AirflowFailException: no retry
    out = capfd.readouterr().out
    assert "platform health check unavailable: db_connections: Airflow connection 'etl_no_such_pg'" in out


def test_hanging_postgres_with_fail_fails_the_gate_within_the_check_timeout(capfd: Any) -> None:
    with (
        silent_listener() as port,
        _settings(on_unavailable={"db_connections": "fail"}, check_timeout=1, retries=2),
    ):
        started = time.perf_counter()
        run = run_dag("health_gate_poke", conn_env={"etl_test_pg": f"postgresql://x@127.0.0.1:{port}/x"})
        elapsed = time.perf_counter() - started
    outcome = task_outcomes(run)["gate"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)
    out = capfd.readouterr().out
    assert re.search(
        r"platform health check unavailable: db_connections: (no answer within 1 s|PostgreSQL)", out
    )
    assert elapsed < 20  # one bounded check plus dag.test overhead, not the sensor's 60 s timeout


@pytest.mark.parametrize("mode", ["deferred", "reschedule"])
def test_celery_queue_messages_hold_the_gate_at_critical_until_deleted(
    redis_db: Any, webhook: str, mode: str
) -> None:
    keys = [QUEUE, QUEUE + "\x06\x166"]  # the queue and one kombu priority sub-queue
    redis_db.client.rpush(keys[0], *["m"] * 3)
    redis_db.client.rpush(keys[1], *["p"] * 3)

    def drain_after_the_critical_alert() -> None:
        _when(lambda: bool(_Hook.received))
        time.sleep(1.5)  # still waiting now
        redis_db.client.delete(*keys)

    drainer = threading.Thread(target=drain_after_the_critical_alert, daemon=True)
    drainer.start()
    settings = {
        "checks": ["queue_length", "memory_usage_percent"],
        "redis_conn_id": "etl_test_redis",
        "thresholds": {"queue_length": [2, 5], "memory_usage_percent": [100, 100]},
    }
    try:
        with _settings(**settings):
            run = run_dag(
                f"health_gate_{mode}",
                conn_env={"etl_test_redis": redis_db.url},
                conf={"webhook_url": webhook, "queues": f"{QUEUE}, other"},  # a templated string
            )
    finally:
        redis_db.client.delete(*keys)
        drainer.join(5)
    assert task_outcomes(run)["gate"].state == "success"
    assert _alerts() == ["critical"]
    alerted = next(r for r in _Hook.received[0]["readings"] if r["metric"] == "queue_length")
    assert (alerted["value"], alerted["level"]) == (6.0, "critical")
    assert alerted["detail"] == f"{QUEUE}=6, other=0"  # two queues, not one per character
    final = next(r for r in xcom_value(run, "gate")["readings"] if r["metric"] == "queue_length")
    assert final["value"] == 0.0


@pytest.mark.parametrize("escalate", [False, True], ids=["warning", "warning-then-critical"])
def test_wait_on_warning_waits_at_warning_and_alerts_an_escalation_while_deferred(
    quiet_pg: Any, webhook: str, escalate: bool
) -> None:
    warning, critical = _connection_levels(quiet_pg)
    held = [quiet_pg.connect() for _ in range(5)]  # warning
    released: list[float] = []

    def load_then_release() -> None:
        _when(lambda: bool(_Hook.received))  # the warning alert: the sensor waits, deferred
        if escalate:
            held.extend(quiet_pg.connect() for _ in range(5))  # critical, seen by the trigger
            _when(lambda: len(_Hook.received) >= 2)
        time.sleep(1.5)
        released.append(time.perf_counter())
        for conn in held:
            conn.close()

    worker = threading.Thread(target=load_then_release, daemon=True)
    worker.start()
    try:
        with _settings(
            thresholds={"db_connections": {"warning": warning, "critical": critical}}, wait_on_warning=True
        ):
            run = run_dag(
                "health_gate_deferred",
                conn_env={"etl_test_pg": quiet_pg.uri("postgres")},
                conf={"webhook_url": webhook},
            )
    finally:
        worker.join(10)
        for conn in held:
            conn.close()
    assert task_outcomes(run)["gate"].state == "success"
    assert released and time.perf_counter() >= released[0]  # it finished only after the release
    assert xcom_value(run, "gate")["level"] == "ok"
    assert _alerts() == (["warning", "critical"] if escalate else ["warning"])


def test_notifier_on_its_own_as_an_on_failure_callback(webhook: str) -> None:
    run = run_dag("health_alert_callback", conf={"webhook_url": webhook})
    assert task_outcomes(run)["doomed"].state == "failed"
    assert len(_Hook.received) == 1
    body = _Hook.received[0]
    assert (body["level"], body["dag_id"], body["task_id"]) == ("critical", "health_alert_callback", "doomed")
    assert body["message"] == f"doomed failed in {run.run_id}"  # the templated message, rendered


def test_statsd_receives_health_gauges_and_level_counters(airflow_home: Path, pg_server: Any) -> None:
    """A real `airflow dags test` in a subprocess (Stats reads its settings once per process)."""
    settings = {
        "thresholds": {"db_connections": [0, 0], "memory_usage_percent": [0, 100]},  # critical, warning
        "timeout": 1,
    }
    done = dags_test_with_statsd(
        "health_gate_poke",
        env={"AIRFLOW_CONN_ETL_TEST_PG": pg_server.uri("postgres"), "ETL_TEST_HEALTH": json.dumps(settings)},
        influx_tags=False,
    )
    lines = done.lines  # the gate fails at critical by design; the metrics are what count here
    ours = [line for line in lines if ".etl.health." in line]
    gauge = re.compile(r"^airflow\.etl\.health\.(db_connections|memory_usage_percent):(\d+(\.\d+)?)\|g$")
    gauges = {m.group(1): float(m.group(2)) for line in ours if (m := gauge.match(line))}
    assert set(gauges) == {"db_connections", "memory_usage_percent"}, ours[:20]
    assert gauges["db_connections"] > 0 and 0 < gauges["memory_usage_percent"] < 100
    assert "airflow.etl.health.critical:1|c" in ours
    assert "airflow.etl.health.warning:1|c" in ours


def test_snapshot_alerts_on_critical_and_returns_the_readings(pg_server: Any, webhook: str) -> None:
    """The monitoring DAG's operator: one reading, an alert on critical, and it never waits."""
    with _settings(thresholds={"db_connections": {"warning": 0, "critical": 0}}):  # any connection: critical
        run = run_dag(
            "health_snapshot",
            conn_env={"etl_test_pg": pg_server.uri("postgres")},
            conf={"webhook_url": webhook},
        )
    assert task_outcomes(run)["snapshot"].state == "success"
    report = xcom_value(run, "snapshot")
    assert report["level"] == "critical" and report["failed"] == []
    readings = {r["metric"]: r for r in report["readings"]}
    assert readings["db_connections"]["level"] == "critical" and readings["db_connections"]["value"] > 0
    assert set(readings) >= {"db_connections", "avg_response_time", "memory_usage_percent"}
    assert [a["level"] for a in _Hook.received] == ["critical"]
    assert _Hook.received[0]["readings"] == report["readings"]


def test_snapshot_with_fail_alerts_and_fails_when_postgres_does_not_answer(webhook: str, capfd: Any) -> None:
    with silent_listener() as port, _settings(on_unavailable={"db_connections": "fail"}, check_timeout=1):
        run = run_dag(
            "health_snapshot",
            conn_env={"etl_test_pg": f"postgresql://x@127.0.0.1:{port}/x"},
            conf={"webhook_url": webhook},
        )
    outcome = task_outcomes(run)["snapshot"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # paged, and not retried
    assert len(_Hook.received) == 1 and _Hook.received[0]["level"] == "critical"
    assert _Hook.received[0]["message"].startswith("unavailable: db_connections")
    assert "platform health check unavailable: db_connections" in capfd.readouterr().out

"""DAGs for tests/test_health*.py.

Settings come from ETL_TEST_HEALTH (JSON), one json.loads when run_dag parses this file (test-only:
it parses the folder fresh for every run). The webhook URL and the queues come from dag_run.conf
through templates, rendered when the task runs (a templated `queues` string must not be split into
characters; a templated webhook URL must be rendered before the sensor alerts).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.operators.health import PlatformHealthSnapshotOperator
from etl_platform.sensors.performance import PerformanceCheckSensor

SETTINGS = json.loads(os.environ.get("ETL_TEST_HEALTH", "{}"))
WEBHOOK = "{{ dag_run.conf.get('webhook_url') or '' }}"

for mode in ("deferred", "poke", "reschedule"):
    with DAG(
        f"health_gate_{mode}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"]
    ):
        PerformanceCheckSensor(
            task_id="gate",
            postgres_conn_id=SETTINGS.get("postgres_conn_id", "etl_test_pg"),
            redis_conn_id=SETTINGS.get("redis_conn_id"),
            queues="{{ dag_run.conf.get('queues') or '' }}",
            checks=SETTINGS.get("checks", ["db_connections", "memory_usage_percent"]),
            thresholds=SETTINGS.get("thresholds", {}),
            on_unavailable=SETTINGS.get("on_unavailable", {}),
            check_timeout=SETTINGS.get("check_timeout", 5.0),
            wait_on_warning=SETTINGS.get("wait_on_warning", False),
            notifier=PerformanceAlertNotifier(webhook_url=WEBHOOK),
            deferrable=mode == "deferred",
            mode="reschedule" if mode == "reschedule" else "poke",
            poke_interval=0.5,
            timeout=SETTINGS.get("timeout", 60),
            retries=SETTINGS.get("retries", 0),
            retry_delay=timedelta(seconds=0.5),
        )


with DAG(
    "health_alert_callback", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"]
):

    @task(
        on_failure_callback=PerformanceAlertNotifier(
            webhook_url=WEBHOOK, message="{{ ti.task_id }} failed in {{ dag_run.run_id }}"
        )
    )
    def doomed() -> None:
        raise RuntimeError("the heavy step broke")

    doomed()


with DAG("health_snapshot", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"]):
    PlatformHealthSnapshotOperator(
        task_id="snapshot",
        postgres_conn_id=SETTINGS.get("postgres_conn_id", "etl_test_pg"),
        thresholds=SETTINGS.get("thresholds", {}),
        on_unavailable=SETTINGS.get("on_unavailable", {}),
        check_timeout=SETTINGS.get("check_timeout", 5.0),
        notifier=PerformanceAlertNotifier(webhook_url=WEBHOOK),
        retries=1,  # a failure from on_unavailable="fail" must not be retried
        retry_delay=timedelta(seconds=0.5),
    )

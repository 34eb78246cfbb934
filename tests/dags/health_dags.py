"""DAGs for tests/test_health.py. Thresholds and the webhook come from the environment, read at parse
time (test-only: run_dag parses this file fresh for every run)."""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.sdk import DAG

from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.sensors.performance import PerformanceCheckSensor

SETTINGS = json.loads(os.environ.get("ETL_TEST_HEALTH", "{}"))

for mode in ("deferred", "poke", "reschedule"):
    with DAG(
        f"health_gate_{mode}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"]
    ):
        PerformanceCheckSensor(
            task_id="gate",
            postgres_conn_id="etl_test_pg",
            checks=["db_connections", "memory_usage_percent"],
            thresholds=SETTINGS.get("thresholds", {}),
            wait_on_warning=SETTINGS.get("wait_on_warning", False),
            notifier=PerformanceAlertNotifier(webhook_url=SETTINGS.get("webhook_url")),
            deferrable=mode == "deferred",
            mode="reschedule" if mode == "reschedule" else "poke",
            poke_interval=0.5,
            timeout=SETTINGS.get("timeout", 60),
        )

"""The e2e suite's health gate (tests/e2e): a PerformanceCheckSensor that defers in the platform's real
triggerer, on a reading the test controls.

Its only check is the length of a Celery queue no worker serves (`dag_run.conf["hold_queue"]`): the test
pushes messages there (critical from one message on) and deletes them when the gate may pass. The
platform loads this folder as a DAG bundle of its own (PlatformSettings.extra_dag_folders), so the
production dags/ stays as it is.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from etl_platform.sensors.performance import PerformanceCheckSensor

with DAG(
    "e2e_health_gate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["test", "e2e"],
):
    gate = PerformanceCheckSensor(
        task_id="gate",
        queues="{{ dag_run.conf.get('hold_queue') or 'e2e_gate_hold' }}",
        checks=["queue_length"],
        thresholds={"queue_length": {"warning": 1, "critical": 1}},
        on_unavailable={"queue_length": "fail"},
        poke_interval=1,
        timeout=900,
        queue="extract",
    )

    @task(queue="load")
    def after_gate() -> str:
        return "passed"

    gate >> after_gate()

"""Every 5 minutes: read platform health, send the gauges to StatsD, alert on critical (and when
the warehouse stops answering).

Runs on its own `monitoring` queue (a small worker of its own) with a short timeout and no retries,
so it never holds up ETL and ETL never holds it up.
Connections: `etl_warehouse` (PostgreSQL), `etl_pgbouncer` (PgBouncer's admin console, SHOW POOLS);
the Celery broker comes from Airflow's [celery] broker_url.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.operators.health import PlatformHealthSnapshotOperator

with DAG(
    dag_id="performance_monitoring",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=4),
    tags=["etl-platform", "monitoring"],
    doc_md=__doc__,
):
    PlatformHealthSnapshotOperator(
        task_id="read_platform_health",
        postgres_conn_id="etl_warehouse",
        pgbouncer_conn_id="etl_pgbouncer",
        queues=["extract", "transform", "load", "notifications", "monitoring"],
        on_unavailable={"db_connections": "fail"},  # a warehouse that stops answering pages, red run
        check_timeout=5,
        execution_timeout=timedelta(seconds=60),
        retries=0,
        queue="monitoring",
        notifier=PerformanceAlertNotifier(webhook_url=os.environ.get("ETL_ALERT_WEBHOOK_URL")),
    )

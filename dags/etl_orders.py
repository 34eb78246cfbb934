"""Daily orders load: source OLTP -> monthly-partitioned warehouse, one data interval per run.

gate (extract queue, deferrable) -> ensure partitions (load) -> transfer with transform (load)
-> ANALYZE (load) -> run summary (notifications). delete_insert makes every run idempotent: a rerun
or a catch-up run replaces exactly its interval's rows. A load that moved rows emits an event on the
`orders_clean` asset (extra: rows, bytes, window_start, window_end); the daily summary is its own DAG,
etl_orders_daily_summary, scheduled on that asset instead of a clock.

Connections: `etl_source` (OLTP), `etl_warehouse` (warehouse and run ledger), `etl_pgbouncer`
(PgBouncer's admin console, read by the gate).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.operators.analyze import AnalyzeTableOperator
from etl_platform.operators.notify import RunSummaryOperator
from etl_platform.operators.partitions import EnsurePartitionsOperator
from etl_platform.operators.transfer import StreamingTransferOperator
from etl_platform.sensors.performance import PerformanceCheckSensor
from order_transforms import clean_orders
from warehouse_assets import ORDERS_CLEAN

SOURCE, WAREHOUSE, PGBOUNCER = "etl_source", "etl_warehouse", "etl_pgbouncer"
TABLE = "warehouse.orders_clean"
WEBHOOK = os.environ.get("ETL_ALERT_WEBHOOK_URL")
# include/sql beside dags/ (docker-compose mounts both under /opt/airflow): the SQL templates' root.
SQL_DIR = Path(__file__).resolve().parents[1] / "include" / "sql"

with DAG(
    dag_id="etl_orders",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=True,
    max_active_runs=4,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
    tags=["etl-platform", "orders"],
    doc_md=__doc__,
    template_searchpath=[str(SQL_DIR)],
):
    chain(
        PerformanceCheckSensor(
            task_id="check_platform",
            postgres_conn_id=WAREHOUSE,
            pgbouncer_conn_id=PGBOUNCER,  # SHOW POOLS: clients waiting for a warehouse connection
            queues=["extract", "transform", "load"],
            on_unavailable={"queue_length": "warn"},
            notifier=PerformanceAlertNotifier(webhook_url=WEBHOOK),
            poke_interval=60,
            timeout=3 * 3600,
            queue="extract",
        ),
        EnsurePartitionsOperator(
            task_id="ensure_partitions",
            postgres_conn_id=WAREHOUSE,
            table=TABLE,
            interval="month",
            start="{{ data_interval_start | ds }}",
            premake=3,
            queue="load",
        ),
        StreamingTransferOperator(
            task_id="load_orders",
            source_conn_id=SOURCE,
            destination_conn_id=WAREHOUSE,
            source_table="public.orders",
            destination_table=TABLE,
            write_mode="delete_insert",
            incremental_column="order_ts",
            transform=clean_orders,
            ledger_conn_id=WAREHOUSE,
            destination_asset=ORDERS_CLEAN,
            queue="load",
        ),
        AnalyzeTableOperator(task_id="analyze", postgres_conn_id=WAREHOUSE, table=TABLE, queue="load"),
        RunSummaryOperator(
            task_id="notify", transfer_task_ids=["load_orders"], webhook_url=WEBHOOK, queue="notifications"
        ),
    )

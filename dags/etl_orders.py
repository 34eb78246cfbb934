"""Daily orders load: source OLTP -> monthly-partitioned warehouse, one data interval per run.

gate (extract queue, deferrable) -> ensure partitions (load) -> transfer with transform (load)
-> ANALYZE (load) -> run summary (notifications). delete_insert makes every run idempotent: a rerun
or a catch-up run replaces exactly its interval's rows.

Connections: `etl_source` (OLTP), `etl_warehouse` (warehouse and run ledger).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from etl_platform.notifications.performance import PerformanceAlertNotifier
from etl_platform.operators.analyze import AnalyzeTableOperator
from etl_platform.operators.notify import RunSummaryOperator
from etl_platform.operators.partitions import EnsurePartitionsOperator
from etl_platform.operators.transfer import StreamingTransferOperator
from etl_platform.sensors.performance import PerformanceCheckSensor
from etl_platform.transforms import clean_orders

SOURCE, WAREHOUSE = "etl_source", "etl_warehouse"
TABLE = "warehouse.orders_clean"
WEBHOOK = os.environ.get("ETL_ALERT_WEBHOOK_URL")

with DAG(
    dag_id="etl_orders",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=True,
    max_active_runs=4,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
    tags=["etl-platform", "orders"],
    doc_md=__doc__,
):
    chain(
        PerformanceCheckSensor(
            task_id="check_platform",
            postgres_conn_id=WAREHOUSE,
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
            queue="load",
        ),
        AnalyzeTableOperator(task_id="analyze", postgres_conn_id=WAREHOUSE, table=TABLE, queue="load"),
        RunSummaryOperator(
            task_id="notify", transfer_task_ids=["load_orders"], webhook_url=WEBHOOK, queue="notifications"
        ),
    )

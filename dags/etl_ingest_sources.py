"""Daily ingest of the orders that do not come from the PostgreSQL OLTP: the MariaDB shop and file drops.

Two independent loads on the `load` queue, then a run summary (notifications):

- load_mariadb_orders: the MariaDB shop's `orders` -> warehouse.orders_oltp, the data interval's rows
  (order_ts, DATETIME in UTC) replaced with delete_insert, so a rerun or catch-up run is idempotent. Two
  streams on one synchronized snapshot; MariaDB zero dates load as NULL. The table is named without a
  database: the connection's schema names it (`shop` in docker-compose, `<prefix>_shop` under `make up`).
- load_parquet_drop: every Parquet file under the lake's drop/orders/ -> warehouse.orders_drop, upserted
  on id, so a file dropped again (or read again by the next run) does not duplicate its rows; an empty
  drop folder is a 0-row success. Move processed files away to keep the daily read short.

Both landing tables come from include/sql/warehouse/orders_sources.sql. The lake is the environment's
ETL_LAKE_URL (docker-compose: the `lake` volume at /opt/airflow/lake; `make up`: .run/platform/lake) read
through the connection ETL_LAKE_CONN_ID names (unset: local files; an `aws` connection for s3://).

Connections: `etl_mysql_source` (MariaDB, conn_type mysql), `etl_warehouse` (warehouse and run ledger),
and ETL_LAKE_CONN_ID's when set.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from etl_platform.operators.notify import RunSummaryOperator
from etl_platform.operators.transfer import StreamingTransferOperator

MARIADB, WAREHOUSE = "etl_mysql_source", "etl_warehouse"
# Environment only (no Variable or connection look-up at parse time).
LAKE_URL = os.environ.get("ETL_LAKE_URL", "file:///opt/airflow/lake").rstrip("/")
LAKE_CONN_ID = os.environ.get("ETL_LAKE_CONN_ID") or None
WEBHOOK = os.environ.get("ETL_ALERT_WEBHOOK_URL")

with DAG(
    dag_id="etl_ingest_sources",
    schedule=CronDataIntervalTimetable("30 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
    tags=["etl-platform", "orders", "ingest"],
    doc_md=__doc__,
):
    loads = [
        StreamingTransferOperator(
            task_id="load_mariadb_orders",
            source_conn_id=MARIADB,
            destination_conn_id=WAREHOUSE,
            source_table="orders",  # in the connection's database
            destination_table="warehouse.orders_oltp",
            write_mode="delete_insert",
            incremental_column="order_ts",
            parallelism=2,
            zero_dates="null",
            ledger_conn_id=WAREHOUSE,
            queue="load",
        ),
        StreamingTransferOperator(
            task_id="load_parquet_drop",
            source_path=f"{LAKE_URL}/drop/orders/",
            source_conn_id=LAKE_CONN_ID,
            source_format="parquet",
            allow_empty=True,
            destination_conn_id=WAREHOUSE,
            destination_table="warehouse.orders_drop",
            write_mode="upsert",
            ledger_conn_id=WAREHOUSE,
            queue="load",
        ),
    ]
    notify = RunSummaryOperator(
        task_id="notify",
        transfer_task_ids=[task.task_id for task in loads],
        webhook_url=WEBHOOK,
        queue="notifications",
    )
    loads >> notify

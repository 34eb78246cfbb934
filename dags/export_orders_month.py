"""Monthly export of the warehouse's orders to the lake as Parquet, one directory per calendar month.

export_month (load queue): warehouse.orders_clean's rows of the month -> ETL_LAKE_URL's
exports/orders/month=YYYY-MM/country=XX/ (Hive-style, one directory per country), a new file every
1,000,000 rows, each file published under its final name only when complete; a retry resumes.

The run on the 1st at 03:00 UTC exports the calendar month before it. Its data interval runs from
03:00 on the 1st to 03:00 on the next 1st, so the query truncates both ends to the month (in UTC): the
export holds exactly the month its directory names, and etl_orders' 01:00 run has loaded the month's
last rows by then.

Chunks and checkpoints key on `id`. orders_clean's primary key is (id, order_ts) (partitioning needs the
partition column in it), so `id` alone is unique only because our orders' ids never repeat: within a
month, which is all this query reads, every id is unique in our data.

The lake is the environment's ETL_LAKE_URL (docker-compose: the `lake` volume at /opt/airflow/lake;
`make up`: .run/platform/lake), written through the connection ETL_LAKE_CONN_ID names (unset: local
files; an `aws` connection for s3://).

Connections: `etl_warehouse` (the source), and ETL_LAKE_CONN_ID's when set.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from etl_platform.operators.transfer import StreamingTransferOperator

WAREHOUSE = "etl_warehouse"
# Environment only (no Variable or connection look-up at parse time).
LAKE_URL = os.environ.get("ETL_LAKE_URL", "file:///opt/airflow/lake").rstrip("/")
LAKE_CONN_ID = os.environ.get("ETL_LAKE_CONN_ID") or None

MONTH_SQL = """
SELECT id, customer_id, order_ts, status, amount, quantity, discount, channel, country, note, processed_at
FROM warehouse.orders_clean
WHERE order_ts >= date_trunc('month', '{{ data_interval_start }}'::timestamptz, 'UTC')
  AND order_ts < date_trunc('month', '{{ data_interval_end }}'::timestamptz, 'UTC')
"""

with DAG(
    dag_id="export_orders_month",
    schedule=CronDataIntervalTimetable("0 3 1 * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
    tags=["etl-platform", "orders", "export"],
    doc_md=__doc__,
):
    StreamingTransferOperator(
        task_id="export_month",
        source_conn_id=WAREHOUSE,
        source_sql=MONTH_SQL,
        key_column="id",
        # {{{{ }}}} in the f-string: Jinja's {{ }} rendered at run time, e.g. .../month=2026-01
        destination_path=f"{LAKE_URL}/exports/orders/month={{{{ data_interval_start.strftime('%Y-%m') }}}}",
        destination_conn_id=LAKE_CONN_ID,
        destination_format="parquet",
        partition_by="country",
        rows_per_file=1_000_000,
        ledger_conn_id=WAREHOUSE,
        queue="load",
    )

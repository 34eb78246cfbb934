"""The `make demo` job: a full refresh of the orders table into the warehouse, with a transform.

Connections: `etl_demo_source` and `etl_demo_warehouse` (scripts/demo.py sets them as
AIRFLOW_CONN_* environment variables).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from etl_platform.operators.transfer import StreamingTransferOperator
from etl_platform.transforms import clean_orders

with DAG(
    dag_id="demo_orders_transfer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["etl-platform", "demo"],
    doc_md=__doc__,
):
    StreamingTransferOperator(
        task_id="load_orders",
        source_conn_id="etl_demo_source",
        destination_conn_id="etl_demo_warehouse",
        source_table="public.orders",
        destination_table="warehouse.orders_clean",
        write_mode="truncate",
        transform=clean_orders,
        parallelism=2,
        queue="load",
    )

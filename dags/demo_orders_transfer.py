"""The `make demo` job: a full refresh of the orders table into the monthly-partitioned warehouse.

migrate_ledger -> ensure_partitions -> load_orders (transform, parallelism 2, recorded in the ledger).
Connections `etl_demo_source` and `etl_demo_warehouse` come from scripts/demo.py as AIRFLOW_CONN_*
environment variables.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, chain

from etl_platform.operators.ledger import EnsureLedgerSchemaOperator
from etl_platform.operators.partitions import EnsurePartitionsOperator
from etl_platform.operators.transfer import StreamingTransferOperator
from order_transforms import clean_orders

SOURCE, WAREHOUSE = "etl_demo_source", "etl_demo_warehouse"

with DAG(
    dag_id="demo_orders_transfer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["etl-platform", "demo"],
    doc_md=__doc__,
):
    chain(
        EnsureLedgerSchemaOperator(task_id="migrate_ledger", postgres_conn_id=WAREHOUSE, queue="load"),
        EnsurePartitionsOperator(
            task_id="ensure_partitions",
            postgres_conn_id=WAREHOUSE,
            table="warehouse.orders_clean",
            interval="month",
            start="2026-01-01",  # the generated orders start there
            premake=3,
            queue="load",  # DDL on the table the load writes, like partition_maintenance
        ),
        StreamingTransferOperator(
            task_id="load_orders",
            source_conn_id=SOURCE,
            destination_conn_id=WAREHOUSE,
            source_table="public.orders",
            destination_table="warehouse.orders_clean",
            write_mode="truncate",
            transform=clean_orders,
            parallelism=2,
            ledger_conn_id=WAREHOUSE,
            queue="load",
        ),
    )

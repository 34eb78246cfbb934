"""Daily partition maintenance for the run ledger and the warehouse fact table.

Ensures partitions (3 months ahead), drains the default partitions, then applies retention.
Runs on the `load` queue: its DDL touches the tables the load workers write, and it is short.
Connection `etl_warehouse` holds both the ledger (etl_audit) and the warehouse.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, chain

from etl_platform.operators.ledger import EnsureLedgerSchemaOperator
from etl_platform.operators.partitions import (
    DrainDefaultPartitionOperator,
    EnsurePartitionsOperator,
    PartitionRetentionOperator,
)

WAREHOUSE = "etl_warehouse"
QUEUE = "load"
# table -> retention (detached partitions are moved to the `archive` schema, never dropped here)
TABLES = {
    "etl_audit.pipeline_runs": "13 months",
    "etl_audit.task_runs": "13 months",
    "etl_audit.task_chunks": "13 months",  # a run's Transfer view lives as long as its task_runs rows
    "warehouse.orders_clean": "25 months",
}

with DAG(
    dag_id="partition_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"queue": QUEUE, "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["etl-platform", "maintenance"],
    doc_md=__doc__,
):
    migrate = EnsureLedgerSchemaOperator(task_id="migrate_ledger", postgres_conn_id=WAREHOUSE)
    for table, retention in TABLES.items():
        slug = table.replace(".", "__")
        chain(
            migrate,
            EnsurePartitionsOperator(
                task_id=f"ensure__{slug}",
                postgres_conn_id=WAREHOUSE,
                table=table,
                interval="month",
                premake=3,
            ),
            DrainDefaultPartitionOperator(
                task_id=f"drain__{slug}", postgres_conn_id=WAREHOUSE, table=table, interval="month"
            ),
            PartitionRetentionOperator(
                task_id=f"retention__{slug}",
                postgres_conn_id=WAREHOUSE,
                table=table,
                retention=retention,
                mode="archive",
            ),
        )

"""One big table, many workers: plan key ranges, then one mapped transfer task per range.

Each mapped task is an ordinary Celery task, so the load spreads over every worker serving the
`load` queue (our way past one machine); each resumes on its own checkpoint. Upsert keeps a
re-run harmless. Triggered manually (initial loads, back-fills).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from etl_platform.operators.analyze import AnalyzeTableOperator
from etl_platform.operators.key_ranges import KeyRangePlanOperator
from etl_platform.operators.notify import RunSummaryOperator
from etl_platform.operators.transfer import StreamingTransferOperator
from order_transforms import clean_orders
from warehouse_assets import ORDERS_CLEAN

SOURCE, WAREHOUSE = "etl_source", "etl_warehouse"
TABLE = "warehouse.orders_clean"

with DAG(
    dag_id="etl_orders_bulk",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
    tags=["etl-platform", "orders", "bulk"],
    doc_md=__doc__,
):
    plan = KeyRangePlanOperator(
        task_id="plan_ranges", source_conn_id=SOURCE, source_table="public.orders", ranges=8, queue="extract"
    )
    load = StreamingTransferOperator.partial(
        task_id="load_range",
        source_conn_id=SOURCE,
        destination_conn_id=WAREHOUSE,
        source_table="public.orders",
        destination_table=TABLE,
        write_mode="upsert",
        transform=clean_orders,
        ledger_conn_id=WAREHOUSE,
        destination_asset=ORDERS_CLEAN,  # each range's event (no time window) reruns the daily summary
        queue="load",
    ).expand_kwargs(plan.output)
    analyze = AnalyzeTableOperator(task_id="analyze", postgres_conn_id=WAREHOUSE, table=TABLE, queue="load")
    notify = RunSummaryOperator(task_id="notify", transfer_task_ids=["load_range"], queue="notifications")
    load >> analyze >> notify

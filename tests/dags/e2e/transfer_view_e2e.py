"""The e2e suite's transfer for the per-run Transfer view (tests/e2e/test_dashboard_browser.py).

Copies the first 6,000 source orders in 2,000-row chunks over two streams into a scratch table the test
creates in the warehouse (e2e_transfer_view.orders), recorded in the ledger like the production loads.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from etl_platform.operators.transfer import StreamingTransferOperator

with DAG(
    "e2e_transfer_view",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["test", "e2e"],
):
    StreamingTransferOperator(
        task_id="copy_orders",
        source_conn_id="etl_source",
        destination_conn_id="etl_warehouse",
        source_table="public.orders",
        destination_table="e2e_transfer_view.orders",
        key_max="6000",
        chunk_rows=2_000,
        parallelism=2,
        write_mode="truncate",
        ledger_conn_id="etl_warehouse",
        queue="load",
    )

"""DAGs for tests/test_assets.py: a daily incremental transfer whose destination asset the connection
names, and one whose event goes on a declared, named asset.

Tables come from the run's conf; `etl_asset_src` / `etl_asset_dst` are set by the test.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable

from etl_platform.operators.transfer import StreamingTransferOperator

NAMED = Asset(name="asset_test_orders", uri="postgres://declared-host:5432/warehouse/sales/orders")
COMMON = {
    "source_conn_id": "etl_asset_src",
    "destination_conn_id": "etl_asset_dst",
    "source_table": "{{ params.source_table }}",
    "destination_table": "{{ params.destination_table }}",
    "incremental_column": "order_ts",
    "write_mode": "delete_insert",
    "chunk_rows": 500,
}

for dag_id, declared in (("asset_transfer", None), ("asset_transfer_named", NAMED)):
    with DAG(
        dag_id=dag_id,
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"source_table": "", "destination_table": ""},
        tags=["test"],
    ):
        StreamingTransferOperator(task_id="transfer", destination_asset=declared, **COMMON)  # type: ignore[arg-type]

"""Daily summary of the loaded orders, scheduled on data: it runs when `orders_clean` changes.

etl_orders' (and etl_orders_bulk's) load emits an event on the `orders_clean` asset after every run
that moved rows (extra: rows, bytes, window_start, window_end); the scheduler then runs this DAG once for the events queued
since its last run. It rebuilds warehouse.orders_daily (include/sql/transform/refresh_orders_daily.sql)
for every UTC day from the earliest window_start to the latest window_end of those events
(etl_platform.assets.window_from_events), in one transaction; an event without a window (etl_orders_bulk)
rebuilds every day. A manual run rebuilds the days of the `window_start`/`window_end` params instead.

Connection: `etl_warehouse`.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG

from etl_platform.assets import window_from_events
from warehouse_assets import ORDERS_CLEAN

WAREHOUSE = "etl_warehouse"
SQL_DIR = Path(__file__).resolve().parents[1] / "include" / "sql"
# etl_orders_bulk's key-range loads carry no time window: they may change any day, so all are rebuilt.
EVERY_DAY = ("-infinity", "infinity")  # PostgreSQL timestamptz literals the SQL compares against

with DAG(
    dag_id="etl_orders_daily_summary",
    schedule=[ORDERS_CLEAN],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # runs rebuild overlapping days; one at a time, each sees the loads before it
    params={"window_start": "", "window_end": ""},
    user_defined_macros={"summary_window": partial(window_from_events, unbounded=EVERY_DAY)},
    tags=["etl-platform", "orders"],
    doc_md=__doc__,
    template_searchpath=[str(SQL_DIR)],
):
    SQLExecuteQueryOperator(
        task_id="summarize_orders",
        conn_id=WAREHOUSE,
        sql="transform/refresh_orders_daily.sql",
        parameters={
            "start": "{{ summary_window(triggering_asset_events, params)[0] }}",
            "end": "{{ summary_window(triggering_asset_events, params)[1] }}",
        },
        split_statements=True,  # one transaction: the hook commits after the last statement
        return_last=True,  # XCom: the refreshed days' summary rows, orders and revenue
        queue="transform",
    )

"""Daily summary of the loaded orders, scheduled on data: it runs when `orders_clean` changes.

etl_orders' load emits an event on the `orders_clean` asset after every run that moved rows (extra:
rows, bytes, window_start, window_end); the scheduler then runs this DAG once for the events queued
since its last run. It rebuilds warehouse.orders_daily (include/sql/transform/refresh_orders_daily.sql)
for every UTC day from the earliest window_start to the latest window_end of those events, in one
transaction. A manual run rebuilds the days of the `window_start`/`window_end` params instead.

Connection: `etl_warehouse`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG, Asset

WAREHOUSE = "etl_warehouse"
SQL_DIR = Path(__file__).resolve().parents[1] / "include" / "sql"
# Named, so this DAG knows it at parse time without reading a connection; the same as in etl_orders.py.
ORDERS_CLEAN = Asset(
    name="orders_clean",
    uri=os.environ.get(
        "ETL_ORDERS_CLEAN_ASSET_URI", "postgres://pgbouncer:6432/warehouse/warehouse/orders_clean"
    ),
)


def refresh_window(events: Mapping[Any, Sequence[Any]], params: Mapping[str, Any]) -> tuple[str, str]:
    """[start, end) covering every triggering load's window, or the manual run's params."""
    windows = [
        (event.extra["window_start"], event.extra["window_end"])
        for per_asset in events.values()
        for event in per_asset
        if (event.extra or {}).get("window_start") and (event.extra or {}).get("window_end")
    ]
    if params.get("window_start") and params.get("window_end"):
        windows.append((params["window_start"], params["window_end"]))
    if not windows:
        raise ValueError(
            "No window to summarize: no triggering orders_clean event carries window_start/window_end, "
            "and the params window_start/window_end are empty."
        )
    starts = [_utc(start) for start, _ in windows]
    ends = [_utc(end) for _, end in windows]
    return min(starts).isoformat(), max(ends).isoformat()


def _utc(value: Any) -> datetime:
    """An ISO timestamp; one without an offset (a hand-typed param) is UTC, as the summary's days are."""
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


with DAG(
    dag_id="etl_orders_daily_summary",
    schedule=[ORDERS_CLEAN],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # runs rebuild overlapping days; one at a time, each sees the loads before it
    params={"window_start": "", "window_end": ""},
    user_defined_macros={"refresh_window": refresh_window},
    tags=["etl-platform", "orders"],
    doc_md=__doc__,
    template_searchpath=[str(SQL_DIR)],
):
    SQLExecuteQueryOperator(
        task_id="summarize_orders",
        conn_id=WAREHOUSE,
        sql="transform/refresh_orders_daily.sql",
        parameters={
            "start": "{{ refresh_window(triggering_asset_events, params)[0] }}",
            "end": "{{ refresh_window(triggering_asset_events, params)[1] }}",
        },
        split_statements=True,  # one transaction: the hook commits after the last statement
        return_last=True,  # XCom: the refreshed days' summary rows, orders and revenue
        queue="transform",
    )

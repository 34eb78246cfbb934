"""DAGs for tests/test_transfer_dags.py: one per write mode plus transform, window, retry and bad-input cases.

Tables come from the run's conf (templated through params) so every test uses its own schema.
Connections `etl_test_src` / `etl_test_dst` are set by the test as AIRFLOW_CONN_* variables.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from etl_platform.operators.transfer import StreamingTransferOperator
from order_transforms import clean_orders

COMMON = {
    "source_conn_id": "etl_test_src",
    "destination_conn_id": "etl_test_dst",
    "source_table": "{{ params.source_table }}",
    "destination_table": "{{ params.destination_table }}",
    "chunk_rows": 500,
}
PARAMS = {"source_table": "", "destination_table": ""}


def _dag(dag_id: str, **dag_kwargs: object) -> DAG:
    return DAG(
        dag_id=dag_id,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params=PARAMS,
        tags=["test"],
        **dag_kwargs,  # type: ignore[arg-type]
    )


for mode in ("append", "truncate", "upsert"):
    with _dag(f"transfer_{mode}", schedule=None):
        StreamingTransferOperator(task_id="transfer", write_mode=mode, parallelism=2, **COMMON)  # type: ignore[arg-type]

# Daily, incremental on order_ts: each run moves (or replaces) exactly its data interval. Airflow 3's
# schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC") gives zero-length intervals (CronTriggerTimetable); data intervals need this one.
for mode in ("append", "delete_insert"):
    with _dag(f"transfer_daily_{mode}", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC")):
        StreamingTransferOperator(
            task_id="transfer",
            write_mode=mode,
            incremental_column="order_ts",
            **COMMON,  # type: ignore[arg-type]
        )

with _dag("transfer_transform", schedule=None):
    StreamingTransferOperator(task_id="transfer", transform=clean_orders, write_mode="truncate", **COMMON)  # type: ignore[arg-type]

# The destination rejects one chunk on the first try (a trigger the test installs); the retry resumes.
with _dag("transfer_retry", schedule=None):
    StreamingTransferOperator(
        task_id="transfer",
        retries=2,
        retry_delay=timedelta(seconds=0),
        **COMMON,  # type: ignore[arg-type]
    )

# Truncate mode with retries: the test fails one chunk's checkpoint once; the retry resumes staging.
with _dag("transfer_retry_truncate", schedule=None):
    StreamingTransferOperator(
        task_id="transfer",
        write_mode="truncate",
        retries=2,
        retry_delay=timedelta(seconds=0),
        **COMMON,  # type: ignore[arg-type]
    )

# source_sql and key_column from the run's conf: bad ones must fail the task (once) with a clear message.
with DAG(
    dag_id="transfer_sql",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    params={"source_sql": "", "key_column": "", "destination_table": ""},
    tags=["test"],
):
    StreamingTransferOperator(
        task_id="transfer",
        source_conn_id="etl_test_src",
        destination_conn_id="etl_test_dst",
        source_sql="{{ params.source_sql }}",
        key_column="{{ params.key_column }}",
        destination_table="{{ params.destination_table }}",
        chunk_rows=500,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

with _dag("transfer_ledger", schedule=None):
    StreamingTransferOperator(task_id="transfer", ledger_conn_id="etl_test_ledger", **COMMON)  # type: ignore[arg-type]

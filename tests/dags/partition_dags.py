"""DAGs for tests/test_partition_operators.py: the four partition operators run through dag.test().

The table (and the back-fill start, the retention) come from the run's conf through params, so every test
uses its own schema. Connection `etl_test_dst` is set by the test as an AIRFLOW_CONN_* variable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from etl_platform.operators.partitions import (
    CreatePartitionedIndexOperator,
    DrainDefaultPartitionOperator,
    EnsurePartitionsOperator,
    PartitionRetentionOperator,
)

COMMON = {"postgres_conn_id": "etl_test_dst", "table": "{{ params.table }}", "lock_timeout": "1s"}
PARAMS = {"table": "", "start": "", "retention": "12 months"}


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params=PARAMS,
        tags=["test"],
    )


# ensure (back-fill from params.start) >> drain the default >> index >> retention (keep).
with _dag("partition_maintenance"):
    ensure = EnsurePartitionsOperator(
        task_id="ensure", interval="month", start="{{ params.start }}", premake=2, **COMMON
    )
    drain = DrainDefaultPartitionOperator(task_id="drain", interval="month", **COMMON)
    index = CreatePartitionedIndexOperator(task_id="index", index_name="ev_w_idx", columns=["w"], **COMMON)
    retention = PartitionRetentionOperator(
        task_id="retention", retention="{{ params.retention }}", mode="keep", **COMMON
    )
    ensure >> drain >> index >> retention

with _dag("partition_dry_run"):
    EnsurePartitionsOperator(
        task_id="ensure", interval="month", start="{{ params.start }}", premake=2, dry_run=True, **COMMON
    )

# A bad table is a PartitionConfigError: the task must fail at once, not use its retries.
with _dag("partition_config_error"):
    EnsurePartitionsOperator(
        task_id="ensure", interval="month", retries=2, retry_delay=timedelta(seconds=0), **COMMON
    )

# A lock the table's holder keeps: PartitionLockTimeout is transient, so the task uses its retry.
with _dag("partition_lock_timeout"):
    EnsurePartitionsOperator(
        task_id="ensure",
        interval="month",
        retries=1,
        retry_delay=timedelta(seconds=0),
        **{**COMMON, "lock_timeout": "100ms", "max_attempts": 1},
    )

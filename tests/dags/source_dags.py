"""DAGs for tests/test_source_operators.py: MariaDB and file sources through StreamingTransferOperator.

Tables and paths come from the run's conf (templated through params); connections are AIRFLOW_CONN_*
variables the test sets: `etl_test_mysql` (mysql), `etl_test_dst` (postgres), `etl_test_s3` (aws).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from etl_platform.operators.transfer import StreamingTransferOperator

PARAMS = {"source_table": "", "destination_table": "", "source_path": "", "destination_path": ""}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, start_date=datetime(2026, 1, 1), schedule=None, catchup=False, params=PARAMS)


with _dag("mysql_to_postgres"):
    StreamingTransferOperator(
        task_id="transfer",
        source_conn_id="etl_test_mysql",
        destination_conn_id="etl_test_dst",
        source_table="{{ params.source_table }}",
        destination_table="{{ params.destination_table }}",
        write_mode="truncate",
        parallelism=2,
        chunk_rows=700,
        zero_dates="null",
    )

# An unreachable MariaDB (the test points etl_test_mysql at a closed port or a wrong password).
with _dag("mysql_unreachable"):
    StreamingTransferOperator(
        task_id="transfer",
        retries=2,
        retry_delay=timedelta(seconds=0),
        source_conn_id="etl_test_mysql",
        destination_conn_id="etl_test_dst",
        source_table="{{ params.source_table }}",
        destination_table="{{ params.destination_table }}",
    )

# Parquet files: a local folder (no connection) and an S3 prefix (the aws connection etl_test_s3).
with _dag("files_local_to_postgres"):
    StreamingTransferOperator(
        task_id="transfer",
        source_path="{{ params.source_path }}",
        destination_conn_id="etl_test_dst",
        destination_table="{{ params.destination_table }}",
        write_mode="upsert",
    )

with _dag("files_s3_to_postgres"):
    StreamingTransferOperator(
        task_id="transfer",
        source_path="{{ params.source_path }}",
        source_conn_id="etl_test_s3",
        destination_conn_id="etl_test_dst",
        destination_table="{{ params.destination_table }}",
        allow_empty=False,
    )

# A PostgreSQL table to Parquet files on S3, Hive-partitioned by country, rotated every 1,500 rows.
with _dag("postgres_to_s3_parquet"):
    StreamingTransferOperator(
        task_id="export",
        source_conn_id="etl_test_src",
        source_table="{{ params.source_table }}",
        destination_conn_id="etl_test_s3",
        destination_path="{{ params.destination_path }}",
        partition_by="country",
        rows_per_file=1_500,
        chunk_rows=1_000,
    )

# An export given a templated table-only setting: refused in execute, once it renders to something an
# export would ignore (retries=2 shows the refusal is not retried).
with DAG(
    dag_id="postgres_export_templated_window",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    params={**PARAMS, "incremental_column": ""},
):
    StreamingTransferOperator(
        task_id="export",
        retries=2,
        retry_delay=timedelta(seconds=0),
        source_conn_id="etl_test_src",
        source_table="{{ params.source_table }}",
        destination_path="{{ params.destination_path }}",
        incremental_column="{{ params.incremental_column }}",
    )

"""Throwaway DAG for tests/test_analyze_operator.py: ANALYZE with retries, so a needless retry shows."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from etl_platform.operators.analyze import AnalyzeTableOperator

with DAG(
    dag_id="analyze_table", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"]
):
    AnalyzeTableOperator(
        task_id="analyze",
        postgres_conn_id="etl_test_dst",
        table="{{ dag_run.conf['table'] }}",
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

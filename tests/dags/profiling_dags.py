"""Throwaway DAG for tests/test_profiling.py: the same operator profiled by option, by env switch, not at all."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from etl_platform.operators.analyze import AnalyzeTableOperator

with DAG(
    dag_id="profiling_switches", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"]
):
    table = "{{ dag_run.conf['table'] }}"
    AnalyzeTableOperator(task_id="by_option", postgres_conn_id="etl_test_dst", table=table, profile=True)
    AnalyzeTableOperator(task_id="by_env_switch", postgres_conn_id="etl_test_dst", table=table)
    AnalyzeTableOperator(task_id="not_profiled", postgres_conn_id="etl_test_dst", table=table)

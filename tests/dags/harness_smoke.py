"""Throwaway DAG for tests/test_harness.py: XCom read-back, dag.test() retries, AIRFLOW_CONN_* in a task."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Connection, dag, get_current_context, task


@dag(dag_id="harness_smoke", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"])
def harness_smoke() -> None:
    @task
    def produce() -> dict[str, Any]:
        conf = get_current_context()["dag_run"].conf or {}
        result: dict[str, Any] = {"rows": 3, "echo": conf.get("echo")}
        if conn_id := conf.get("conn_id"):
            # Proves run_dag's conn_env reaches task code and the harness's URI form works in libpq.
            import psycopg
            from psycopg.conninfo import make_conninfo

            conn = Connection.get(conn_id)
            params = {"host": conn.host, "port": conn.port, "user": conn.login, "dbname": conn.schema}
            params.update(conn.extra_dejson)
            with psycopg.connect(make_conninfo(**{k: v for k, v in params.items() if v})) as pg:
                result["current_schema"] = pg.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        return result

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky(payload: dict[str, Any]) -> int:
        # Fails on try 1 only: shows whether dag.test() re-runs a task that is UP_FOR_RETRY.
        if get_current_context()["ti"].try_number < 2:
            raise RuntimeError("flaky: failing try 1 on purpose")
        return int(payload["rows"]) * 2

    flaky(produce())


harness_smoke()

"""`make demo`: generate a realistic orders dataset and load it into the warehouse with Airflow.

Uses ETL_DEMO_POSTGRES_URL when set, otherwise an embedded PostgreSQL (pgserver). Runs the
`demo_orders_transfer` DAG with `airflow dags test` on a throwaway AIRFLOW_HOME under .run/, then
prints what moved, how fast, and the task's peak memory. ETL_DEMO_ROWS sets the size (1,000,000).
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from etl_devstack.datagen import create_orders
from etl_devstack.postgres import PgServer, probe_postgres, start_embedded_postgres
from etl_devstack.provisioning import create_databases, table_exists
from etl_devstack.urls import redact_url
from etl_devstack.warehouse import create_warehouse

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run" / "demo"
SOURCE_DB, WAREHOUSE_DB = "etl_demo_source", "etl_demo_warehouse"
DAG_ID, TASK_ID = "demo_orders_transfer", "load_orders"


def main() -> int:
    rows = int(os.environ.get("ETL_DEMO_ROWS", "1000000"))
    url = os.environ.get("ETL_DEMO_POSTGRES_URL")
    if url:  # asked for by name: a server that does not answer is an error, not a reason to embed one
        found = probe_postgres(url)
        if found is None:
            print(
                f"[demo] ETL_DEMO_POSTGRES_URL={redact_url(url)} does not answer; unset it for an embedded server"
            )
            return 2
        server = found
    else:
        server = start_embedded_postgres()
    where = (
        "embedded PostgreSQL (pgserver)" if server.embedded else f"PostgreSQL at {server.host}:{server.port}"
    )
    print(f"[demo] using {where}", flush=True)
    try:
        _prepare_databases(server, rows)
        env = _airflow_env(server)
        _migrate(env)
        seconds, peak_mb = _run_dag(env)
        summary = _read_summary(env)
        _report(server, summary, seconds, peak_mb)
    finally:
        server.stop()
    return 0


def _prepare_databases(server: PgServer, rows: int) -> None:
    with server.connect() as admin:
        create_databases(admin, (SOURCE_DB, WAREHOUSE_DB))
    with server.connect(SOURCE_DB) as src:
        have = table_exists(src, "public.orders")
        count = src.execute("SELECT count(*) FROM public.orders").fetchone()[0] if have else -1  # type: ignore[index]
        if count != rows:
            print(f"[demo] generating {rows:,} orders over six months ...", flush=True)
            started = time.perf_counter()
            with psycopg.connect(server.conninfo(SOURCE_DB)) as gen:
                create_orders(gen, rows=rows)
            print(f"[demo] generated in {time.perf_counter() - started:.1f} s", flush=True)
        else:
            print(f"[demo] reusing the {rows:,} generated orders", flush=True)
    with server.connect(WAREHOUSE_DB) as wh:
        create_warehouse(wh)


def _airflow_env(server: PgServer) -> dict[str, str]:
    home = RUN_DIR / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_ETL_DEMO_SOURCE": server.uri(SOURCE_DB),
            "AIRFLOW_CONN_ETL_DEMO_WAREHOUSE": server.uri(WAREHOUSE_DB),
        }
    )
    return env


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


def _migrate(env: dict[str, str]) -> None:
    print("[demo] preparing the Airflow metadata database ...", flush=True)
    done = _airflow(env, "db", "migrate")
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit("airflow db migrate failed")


def _run_dag(env: dict[str, str]) -> tuple[float, float]:
    print(f"[demo] airflow dags test {DAG_ID}", flush=True)
    started = time.perf_counter()
    done = _airflow(env, "dags", "test", DAG_ID)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log = RUN_DIR / "dags-test.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        sys.stderr.write((done.stdout + done.stderr)[-6000:])
        raise SystemExit(f"airflow dags test {DAG_ID} failed (full log: {log})")
    return seconds, peak_mb


def _read_summary(env: dict[str, str]) -> dict[str, Any]:
    """The task's XCom, read straight from the demo's own SQLite metadata DB (outside any task)."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value' "
            "ORDER BY timestamp DESC LIMIT 1",
            (DAG_ID, TASK_ID),
        ).fetchone()
    if row is None:
        raise SystemExit("the transfer task left no summary in XCom")
    value = row[0]
    return json.loads(value) if isinstance(value, str | bytes) else value


def _report(server: PgServer, summary: dict[str, Any], seconds: float, peak_mb: float) -> None:
    with server.connect(SOURCE_DB) as src, server.connect(WAREHOUSE_DB) as wh:
        expected = src.execute(
            "SELECT count(*) FROM public.orders WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL "
            "AND amount IS NOT NULL"
        ).fetchone()[0]  # type: ignore[index]
        loaded = wh.execute("SELECT count(*) FROM warehouse.orders_clean").fetchone()[0]  # type: ignore[index]
        partitions = wh.execute(
            "SELECT count(*) FILTER (WHERE NOT c.relispartition OR pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'), "
            "count(*) FILTER (WHERE s.n > 0) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "CROSS JOIN LATERAL (SELECT count(*) AS n FROM warehouse.orders_clean o WHERE o.tableoid = c.oid) s "
            "WHERE i.inhparent = 'warehouse.orders_clean'::regclass"
        ).fetchone()
        ledger = wh.execute(
            "SELECT status, rows, round(seconds::numeric, 2), round(peak_rss_mb::numeric) FROM etl_audit.task_runs "
            "WHERE pipeline = 'demo_orders_transfer' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    status = "OK" if loaded == expected else "MISMATCH"
    print()
    print(
        "etl-platform demo: orders -> warehouse.orders_clean (monthly partitions, transform clean_orders, parallelism 2)"
    )
    print(f"  rows read           {summary['rows_read']:>14,}")
    print(f"  rows loaded         {summary['rows']:>14,}   warehouse holds {loaded:,} ({status})")
    print(f"  transfer seconds    {summary['seconds']:>14.2f}")
    print(f"  rows/s              {summary['rows_per_second']:>14,.0f}")
    print(f"  task peak memory    {summary['peak_rss_mb']:>11.1f} MB")
    print(f"  chunks              {summary['chunks']:>14,}   format {summary['copy_format']}")
    print(f"  whole DAG run       {seconds:>14.1f} s (airflow dags test, process peak {peak_mb:.0f} MB)")
    if partitions:
        print(f"  monthly partitions  {partitions[0]:>14,}   ({partitions[1]} holding rows)")
    if ledger:
        print(f"  ledger row          status {ledger[0]}, {ledger[1]:,} rows, {ledger[2]} s, {ledger[3]} MB")
    if loaded != expected:
        raise SystemExit(f"warehouse holds {loaded} rows, expected {expected}")


if __name__ == "__main__":
    raise SystemExit(main())

"""The production DAGs (dags/) end to end through dag.test() on real PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.datagen import ORDERS_COLUMNS, create_orders
from etl_devstack.warehouse import create_warehouse
from harness import REPO_ROOT, run_dag, task_outcomes, xcom_value
from harness.pgbouncer import pgbouncer_binary, running_pgbouncer
from tests.transfer_fixtures import table_digest

pytestmark = pytest.mark.airflow
ROWS, DAYS = 2_400, 10  # 240 orders a day from 2026-01-01


@pytest.fixture
def platform(pg_server: Any, redis_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    names = {"source": f"etl_test_oltp_{stamp}", "warehouse": f"etl_test_wh_{stamp}"}
    with pg_server.connect() as admin:
        for name in names.values():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(pg_server.conninfo(names["source"])) as src:
        create_orders(src, rows=ROWS, days=DAYS)
    with psycopg.connect(pg_server.conninfo(names["warehouse"])) as wh:
        create_warehouse(wh, with_ledger=True)
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", redis_db.url)  # the gate reads the Celery queues
    stack = contextlib.ExitStack()
    # The gate reads PgBouncer's SHOW POOLS (etl_pgbouncer), as in docker-compose and `make up`.
    bouncer = stack.enter_context(running_pgbouncer(pg_server)) if pgbouncer_binary() else None
    conns = {
        name: pg_server.uri(db)
        for name, db in (("etl_source", names["source"]), ("etl_warehouse", names["warehouse"]))
    }
    conns["etl_pgbouncer"] = (
        f"postgresql://{pg_server.user}@127.0.0.1:{bouncer.port}/pgbouncer"
        if bouncer
        else pg_server.uri("pgbouncer")
    )
    yield {
        "conns": conns,
        "pgbouncer": bouncer is not None,
        "source": lambda: psycopg.connect(pg_server.conninfo(names["source"], options="-c TimeZone=UTC")),
        "warehouse": lambda: psycopg.connect(
            pg_server.conninfo(names["warehouse"], options="-c TimeZone=UTC")
        ),
    }
    stack.close()
    with pg_server.connect() as admin:
        for name in names.values():
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _digest(conn: Any, table: str, where: str = "TRUE") -> str:
    schema, name = table.split(".")
    return table_digest(conn, schema, name, ORDERS_COLUMNS, where)


def test_etl_orders_loads_exactly_its_interval_and_reruns_idempotently(platform: dict[str, Any]) -> None:
    window = "order_ts >= '2026-01-05 01:00+00' AND order_ts < '2026-01-06 01:00+00'"
    for _ in range(2):
        run = run_dag(
            "etl_orders",
            conn_env=platform["conns"],
            logical_date=datetime(2026, 1, 6, 1, tzinfo=UTC),
            dags_folder=REPO_ROOT / "dags",
        )
        outcomes = task_outcomes(run)
        assert {t: o.state for t, o in outcomes.items()} == dict.fromkeys(
            ["check_platform", "ensure_partitions", "load_orders", "summarize_orders", "analyze", "notify"],
            "success",
        )
    with platform["source"]() as src, platform["warehouse"]() as wh:
        assert _digest(wh, "warehouse.orders_clean") == _digest(src, "public.orders", window)
        stored_in = wh.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM warehouse.orders_clean"
        ).fetchall()
        assert stored_in == [("warehouse.orders_clean_p202601",)]
        ledger = wh.execute(
            "SELECT status, rows FROM etl_audit.task_runs WHERE pipeline = 'etl_orders' ORDER BY started_at"
        ).fetchall()
        summary = wh.execute(
            "SELECT order_day, status, orders, customers, items, revenue, avg_order "
            "FROM warehouse.orders_daily ORDER BY 1, 2"
        ).fetchall()
        expected_summary = src.execute(
            "SELECT (order_ts AT TIME ZONE 'UTC')::date, status, count(*), count(DISTINCT customer_id), "
            f"sum(quantity), sum(amount), round(avg(amount), 2) FROM public.orders WHERE {window} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    assert ledger == [("success", 240), ("success", 240)]
    assert xcom_value(run, "notify")["rows"] == 240
    # the transform step: the days the interval touches (01-05, 01-06), rebuilt from the loaded rows
    assert summary == expected_summary and len(summary) > 2, (summary, expected_summary)
    assert sum(row[2] for row in summary) == 240
    summary_rows, orders, revenue = xcom_value(run, "summarize_orders")[0]
    assert (summary_rows, orders, revenue) == (
        len(summary),
        240,
        sum((row[5] for row in summary), Decimal(0)),
    )
    gate = xcom_value(run, "check_platform")
    assert gate["level"] in ("ok", "warning")
    readings = {r["metric"]: r for r in gate["readings"]}
    assert readings["db_connections"]["value"] is not None, readings  # the connections resolved
    if platform["pgbouncer"]:
        assert readings["pgbouncer_clients_waiting"]["value"] == 0, readings


def test_bulk_load_fans_out_over_mapped_key_ranges(platform: dict[str, Any]) -> None:
    run = run_dag("etl_orders_bulk", conn_env=platform["conns"], dags_folder=REPO_ROOT / "dags")
    outcomes = task_outcomes(run)
    mapped = {t: o.state for t, o in outcomes.items() if t.startswith("load_range[")}
    assert len(mapped) == 8 and set(mapped.values()) == {"success"}
    assert xcom_value(run, "notify")["rows"] == ROWS
    with platform["source"]() as src, platform["warehouse"]() as wh:
        assert _digest(wh, "warehouse.orders_clean") == _digest(src, "public.orders")

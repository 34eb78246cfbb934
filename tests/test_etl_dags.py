"""The production DAGs (dags/) end to end through dag.test() on real PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.datagen import ORDERS_COLUMNS, create_orders
from etl_devstack.warehouse import create_warehouse
from harness import REPO_ROOT, ensure_metadata_db, run_dag, task_outcomes, xcom_value
from harness.pgbouncer import pgbouncer_binary, running_pgbouncer
from harness.statsd import run_with_statsd
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


def _asset_events(run: Any) -> list[Any]:
    """The asset events a DAG run emitted, read back from Airflow's tables (assets loaded)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        query = select(AssetEvent).options(joinedload(AssetEvent.asset))
        query = query.where(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
        events = list(session.scalars(query).unique())
        session.expunge_all()
        return events


def _unpause_from_dags_folder(dag_id: str) -> None:
    """Parse dags/ into the metadata DB as the dag-processor would and unpause `dag_id` (new DAGs start
    paused, and Airflow queues no asset-triggered run for a paused DAG)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    ensure_metadata_db()
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(REPO_ROOT / "dags")), "dags-folder", None)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))


def _queued_for(asset_id: int) -> set[str]:
    """DAGs the scheduler will run because of this asset's events (Airflow's asset_dag_run_queue)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetDagRunQueue.target_dag_id).where(AssetDagRunQueue.asset_id == asset_id)
        return set(session.scalars(query))


def test_etl_orders_loads_exactly_its_interval_and_reruns_idempotently(platform: dict[str, Any]) -> None:
    window = "order_ts >= '2026-01-05 01:00+00' AND order_ts < '2026-01-06 01:00+00'"
    _unpause_from_dags_folder("etl_orders_daily_summary")
    for _ in range(2):
        run = run_dag(
            "etl_orders",
            conn_env=platform["conns"],
            logical_date=datetime(2026, 1, 6, 1, tzinfo=UTC),
            dags_folder=REPO_ROOT / "dags",
        )
        outcomes = task_outcomes(run)
        assert {t: o.state for t, o in outcomes.items()} == dict.fromkeys(
            ["check_platform", "ensure_partitions", "load_orders", "analyze", "notify"], "success"
        )
        # The load's event on orders_clean is what schedules the summary DAG; its window is the run's.
        (event,) = _asset_events(run)
        assert (event.asset.name, event.extra["rows"]) == ("orders_clean", 240), event
        assert _queued_for(event.asset_id) == {"etl_orders_daily_summary"}  # the scheduler's to-do
        summary_run = run_dag(  # what the scheduler would start for that event (dag.test() has no scheduler)
            "etl_orders_daily_summary",
            conn_env=platform["conns"],
            conf={"window_start": event.extra["window_start"], "window_end": event.extra["window_end"]},
            dags_folder=REPO_ROOT / "dags",
        )
        assert task_outcomes(summary_run)["summarize_orders"].state == "success"
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
    summary_rows, orders, revenue = xcom_value(summary_run, "summarize_orders")[0]
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


# ----------------------------------------------------------------------------------------- partition_maintenance


def test_partition_maintenance_dag_ensures_drains_and_archives(pg_server: Any) -> None:
    """The production dags/partition_maintenance.py (not a look-alike) through dag.test() on a real
    warehouse with the ledger: rows parked in the default partitions (this month and one far beyond the
    orders' 25-month retention) end up in monthly partitions, three months ahead exist for every table,
    the defaults are empty and the expired month is archived, not dropped."""
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    name = f"etl_test_maint_{stamp}"
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        now = datetime.now(UTC)
        old = datetime(now.year - 3, now.month, 15, tzinfo=UTC)
        with psycopg.connect(pg_server.conninfo(name)) as wh:
            create_warehouse(wh, with_ledger=True)
            for order_id, ts in ((1, now), (2, old)):
                wh.execute(
                    "INSERT INTO warehouse.orders_clean VALUES "
                    "(%s, 7, %s, 'paid', 10.00, 1, NULL, 'web', 'DE', NULL, now())",
                    (order_id, ts),
                )
            wh.execute(
                "INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, status) "
                "VALUES ('p', 'r1', now(), 'success')"
            )
            wh.commit()
        run = run_dag(
            "partition_maintenance",
            conn_env={"etl_warehouse": pg_server.uri(name)},
            dags_folder=REPO_ROOT / "dags",
        )
        outcomes = task_outcomes(run)
        assert len(outcomes) == 13 and {o.state for o in outcomes.values()} == {"success"}, outcomes
        with psycopg.connect(pg_server.conninfo(name, options="-c TimeZone=UTC")) as wh:
            parts = dict(
                wh.execute(
                    "SELECT p.oid::regclass::text, array_agg(c.relname::text ORDER BY c.relname) "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                    "WHERE p.oid::regclass::text IN "
                    "('warehouse.orders_clean', 'etl_audit.pipeline_runs', 'etl_audit.task_runs', "
                    "'etl_audit.task_chunks') GROUP BY 1"
                ).fetchall()
            )
            months = [
                f"{(now.year * 12 + now.month - 1 + k) // 12}{(now.month - 1 + k) % 12 + 1:02d}"
                for k in range(4)
            ]
            for table, children in parts.items():
                base = table.split(".")[1]
                assert {f"{base}_p{m}" for m in months} <= set(children), (table, children)
            assert set(parts) == {
                "warehouse.orders_clean",
                "etl_audit.pipeline_runs",
                "etl_audit.task_runs",
                "etl_audit.task_chunks",
            }
            for default in ("warehouse.orders_clean_default", "etl_audit.pipeline_runs_default"):
                count = wh.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*default.split(".")))
                ).fetchone()
                assert count == (0,), f"{default} still holds rows"
            where = dict(
                wh.execute(
                    "SELECT id, tableoid::regclass::text FROM warehouse.orders_clean ORDER BY id"
                ).fetchall()
            )
            assert where == {1: f"warehouse.orders_clean_p{months[0]}"}, where
            expired = f"orders_clean_p{old:%Y%m}"
            schema = wh.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s",
                (expired,),
            ).fetchall()
            kept = wh.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("archive", expired))
            ).fetchone()
            archived = [(schema[0][0], expired, kept[0] if kept else None)] if schema else []
            assert archived == [("archive", f"orders_clean_p{old:%Y%m}", 1)], archived
            ledger = wh.execute("SELECT tableoid::regclass::text FROM etl_audit.pipeline_runs").fetchall()
            assert ledger == [(f"etl_audit.pipeline_runs_p{months[0]}",)]
    finally:
        with pg_server.connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# ----------------------------------------------------------------------------------------- resource monitor

_MONITORED_RUN = """
import sys
from pathlib import Path
from harness import run_dag, task_outcomes
run = run_dag("performance_monitoring", dags_folder=Path(sys.argv[1]))
print("OUTCOMES", {t: o.state for t, o in task_outcomes(run).items()})
"""


def test_resource_monitor_logs_and_sends_task_metrics(
    pg_server: Any, redis_db: Any, airflow_home: Path
) -> None:
    """A real task (performance_monitoring, via dag.test() in a child process with StatsD on, as Airflow's
    Stats is configured once per process) is measured by the provider's listener: a "resource monitor:"
    log line and duration, peak RSS and RSS delta metrics tagged with the dag and task ids."""
    run = run_with_statsd(
        [sys.executable, "-c", _MONITORED_RUN, str(REPO_ROOT / "dags")],
        env={
            # dags/ too, as the dags-folder bundle puts it on sys.path (DAG files import warehouse_assets).
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), str(REPO_ROOT / "tests"), str(REPO_ROOT / "dags")]
            ),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            "AIRFLOW__CELERY__BROKER_URL": redis_db.url,
            "AIRFLOW_CONN_ETL_WAREHOUSE": pg_server.uri(pg_server.admin_dbname),
            "AIRFLOW_CONN_ETL_PGBOUNCER": pg_server.uri("pgbouncer"),  # no PgBouncer: reported unavailable
        },
    )
    output, lines = run.output, run.lines
    assert run.returncode == 0, output[-4000:]
    assert "OUTCOMES {'read_platform_health': 'success'}" in output, output[-4000:]
    logged = re.search(
        r"resource monitor: performance_monitoring\.read_platform_health success in ([\d.]+) s, "
        r"peak RSS ([\d.]+) MB, RSS delta ([-+][\d.]+) MB",
        output,
    )
    assert logged, f"no resource monitor log line in:\n{output[-4000:]}"
    tags = {"dag_id=performance_monitoring", "task_id=read_platform_health", "outcome=success"}
    metrics = {}
    for line in lines:
        name, _, rest = line.partition(":")
        metric, *line_tags = name.split(",")
        if metric.startswith("airflow.etl.task.") and tags <= set(line_tags):
            value, kind = rest.split("|")[:2]
            metrics[metric] = (float(value), kind)
    assert set(metrics) == {
        "airflow.etl.task.duration",
        "airflow.etl.task.peak_rss_mb",
        "airflow.etl.task.rss_delta_mb",
    }, lines
    assert metrics["airflow.etl.task.duration"][1] == "ms" and metrics["airflow.etl.task.duration"][0] > 0
    assert metrics["airflow.etl.task.peak_rss_mb"] == (pytest.approx(float(logged.group(2)), abs=0.1), "g")
    assert metrics["airflow.etl.task.peak_rss_mb"][0] > 50  # a Python process with Airflow loaded
    assert metrics["airflow.etl.task.rss_delta_mb"] == (pytest.approx(float(logged.group(3)), abs=0.1), "g")

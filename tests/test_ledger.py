"""The run ledger: idempotent migrations, create_monthly_partition(), rows written by transfers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.datagen import create_empty_like_orders, create_orders
from etl_platform.ledger.migrate import migrate
from harness import run_dag, task_outcomes


@pytest.fixture
def ledger_db(pg_server: Any) -> Any:
    """A database of its own: the ledger lives in the fixed etl_audit schema."""
    name = f"etl_test_ledger_{datetime.now(UTC):%H%M%S%f}"
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _partitions(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
        (table,),
    ).fetchall()


def test_migration_is_idempotent_and_builds_the_dashboard_indexes(pg_server: Any, ledger_db: str) -> None:
    with psycopg.connect(pg_server.conninfo(ledger_db)) as conn:
        assert migrate(conn) == [
            "001_etl_audit_ledger.sql",
            "002_create_monthly_partition.sql",
            "003_dashboard.sql",
        ]
        assert migrate(conn) == []
        kinds = dict(
            conn.execute(
                "SELECT c.relname, p.partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'etl_audit'"
            ).fetchall()
        )
        assert kinds == {"pipeline_runs": "r", "task_runs": "r"}
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'etl_audit' "
                "AND tablename IN ('pipeline_runs', 'task_runs')"
            ).fetchall()
        )
        dashboard = indexes["pipeline_runs_pipeline_started_status_idx"]
        assert "(pipeline, started_at DESC, status)" in dashboard
        active = indexes["pipeline_runs_active_idx"]
        assert "WHERE (status = ANY (ARRAY['running'::text, 'pending'::text]))" in active
        assert "now()" not in active


def test_create_monthly_partition_is_idempotent_and_drains_the_default(
    pg_server: Any, ledger_db: str
) -> None:
    with psycopg.connect(pg_server.conninfo(ledger_db, options="-c TimeZone=UTC"), autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO etl_audit.task_runs (pipeline, run_id, task_id, started_at) "
            "VALUES ('p', 'r1', 't', '2026-03-05T10:00:00Z'), ('p', 'r2', 't', '2026-04-01T00:00:00Z')"
        )
        first = conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.task_runs', '2026-03-17')")
        assert first.fetchone() == ("task_runs_p202603",)
        again = conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.task_runs', '2026-03-01')")
        assert again.fetchone() == ("task_runs_p202603",)
        placed = dict(
            conn.execute(
                "SELECT run_id, tableoid::regclass::text FROM etl_audit.task_runs ORDER BY run_id"
            ).fetchall()
        )
        assert placed == {"r1": "etl_audit.task_runs_p202603", "r2": "etl_audit.task_runs_default"}
        bounds = dict(_partitions(conn, "etl_audit.task_runs"))
        assert bounds["task_runs_p202603"] == (
            "FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-04-01 00:00:00+00')"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="not a partitioned table"):
            conn.execute(
                "SELECT etl_audit.create_monthly_partition('etl_audit.schema_migrations', '2026-03-01')"
            )


@pytest.mark.airflow
def test_transfer_writes_a_ledger_row_per_attempt(
    pg_server: Any, ledger_db: str, src_db: Any, dst_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_server.conninfo(ledger_db)) as conn:
        migrate(conn)
    create_orders(src_db.connect(), schema=src_db.schema, rows=1_500, days=3)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    conf = {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"}
    conns = {
        "etl_test_src": src_db.uri(),
        "etl_test_dst": dst_db.uri(),
        "etl_test_ledger": pg_server.uri(ledger_db),
    }
    monkeypatch.setenv("AIRFLOW__ETL_PLATFORM__LEDGER_CONN_ID", "etl_test_ledger")  # the DAG-run listener
    run = run_dag("transfer_ledger", conf=conf, conn_env=conns)
    assert task_outcomes(run)["transfer"].state == "success"
    bad = run_dag("transfer_ledger", conf={**conf, "destination_table": "nope.nope"}, conn_env=conns)
    assert task_outcomes(bad)["transfer"].state == "failed"
    with psycopg.connect(pg_server.conninfo(ledger_db)) as conn:
        rows = conn.execute(
            "SELECT run_id, status, rows, bytes > 0, seconds > 0, peak_rss_mb > 0, error "
            "FROM etl_audit.task_runs WHERE pipeline = 'transfer_ledger' ORDER BY started_at"
        ).fetchall()
        pipelines = conn.execute(
            "SELECT run_id, status, rows, finished_at IS NOT NULL FROM etl_audit.pipeline_runs "
            "WHERE pipeline = 'transfer_ledger' ORDER BY started_at"
        ).fetchall()
    assert rows[0][:6] == (run.run_id, "success", 1_500, True, True, True)
    assert rows[1][0] == bad.run_id and rows[1][1] == "failed" and "nope.nope" in rows[1][6]
    # Attempts record themselves; the DAG-run listener closes the pipeline run with the run's outcome.
    assert pipelines == [(run.run_id, "success", 1_500, True), (bad.run_id, "failed", 0, True)]

"""The run ledger: idempotent migrations, create_monthly_partition(), rows written by transfers."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from benchmarks.datagen import create_empty_like_orders, create_orders
from etl_devstack.platform import free_port
from etl_platform.ledger import runs
from etl_platform.ledger.chunks import ChunkRecorder
from etl_platform.ledger.migrate import migrate, migration_files
from etl_platform.ledger.runs import PipelineRun
from etl_platform.ledger.settings import ChunkSettings
from etl_platform.ledger.writer import LedgerWriter, TaskAttempt
from etl_platform.partitions import maintenance
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.transfer import TransferSpec, run_transfer
from etl_platform.transfer.progress import ChunkEvent, recording_chunks
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
            "004_transfer_views.sql",
        ]
        assert migrate(conn) == []
        kinds = dict(
            conn.execute(
                "SELECT c.relname, p.partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'etl_audit'"
            ).fetchall()
        )
        assert kinds == {"pipeline_runs": "r", "task_runs": "r", "task_chunks": "r"}
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'etl_audit' "
                "AND tablename IN ('pipeline_runs', 'task_runs')"
            ).fetchall()
        )
        dashboard = indexes["pipeline_runs_pipeline_started_status_idx"]
        assert "(pipeline, started_at DESC, status)" in dashboard
        for table in ("pipeline_runs", "task_runs"):
            dashboard = indexes[f"{table}_pipeline_started_status_idx"]
            assert f"ON ONLY etl_audit.{table} USING btree (pipeline, started_at DESC, status)" in dashboard
            active = indexes[f"{table}_active_idx"]
            assert f"ON ONLY etl_audit.{table} USING btree (started_at DESC) WHERE " in active
            assert active.endswith("WHERE (status = ANY (ARRAY['running'::text, 'pending'::text])))") or (
                active.endswith("WHERE (status = ANY (ARRAY['running'::text, 'pending'::text]))")
            )
            assert "now()" not in active
        # Both follow every partition, the default included.
        children = conn.execute(
            "SELECT p.relname, count(*) FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent "
            "WHERE p.relname IN ('task_runs_pipeline_started_status_idx', 'task_runs_active_idx') GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert children == [("task_runs_active_idx", 1), ("task_runs_pipeline_started_status_idx", 1)]


def test_migrate_reapplies_a_file_whose_checksum_changed(pg_server: Any, ledger_db: str) -> None:
    """An upgrade: the recorded checksum of 002 is an older file's; migrate applies the current 002 again."""
    with psycopg.connect(pg_server.conninfo(ledger_db), autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "CREATE OR REPLACE FUNCTION etl_audit.create_monthly_partition(parent regclass, start_date date) "
            "RETURNS text LANGUAGE sql AS $$ SELECT 'old'::text $$"
        )
        conn.execute(
            "UPDATE etl_audit.schema_migrations SET checksum = 'an older file', applied_at = '2026-01-01' "
            "WHERE name = '002_create_monthly_partition.sql'"
        )
        assert migrate(conn) == ["002_create_monthly_partition.sql"]
        config = conn.execute(
            "SELECT proconfig FROM pg_proc WHERE oid = 'etl_audit.create_monthly_partition'::regproc"
        ).fetchone()
        assert config == (["TimeZone=UTC", "lock_timeout=5s"],)
        current = dict(migration_files())["002_create_monthly_partition.sql"]
        recorded = conn.execute(
            "SELECT checksum, applied_at > '2026-01-01' FROM etl_audit.schema_migrations "
            "WHERE name = '002_create_monthly_partition.sql'"
        ).fetchone()
        assert recorded == (hashlib.sha256(current.encode()).hexdigest(), True)
        assert migrate(conn) == []


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


def test_create_monthly_partition_never_waits_for_a_busy_default_while_holding_the_parent(
    pg_server: Any, ledger_db: str
) -> None:
    """A reader of the default makes the call fail at once (55P03, nothing moved) instead of queueing
    ACCESS EXCLUSIVE on the default behind it while holding the parent, which would stall writers."""
    conninfo = pg_server.conninfo(ledger_db, options="-c TimeZone=UTC")
    with psycopg.connect(conninfo, autocommit=True) as conn, psycopg.connect(conninfo) as reader:
        migrate(conn)
        conn.execute(
            "INSERT INTO etl_audit.task_runs (pipeline, run_id, task_id, started_at) "
            "VALUES ('p', 'r1', 't', '2026-05-05T10:00:00Z')"
        )
        reader.execute("SELECT count(*) FROM etl_audit.task_runs_default").fetchone()  # holds ACCESS SHARE
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.task_runs', '2026-05-01')")
        assert time.monotonic() - started < 1.0  # the function's lock_timeout is 5 s: it did not wait
        where = conn.execute("SELECT tableoid::regclass::text FROM etl_audit.task_runs WHERE run_id = 'r1'")
        assert where.fetchone() == ("etl_audit.task_runs_default",)
        reader.rollback()
        made = conn.execute("SELECT etl_audit.create_monthly_partition('etl_audit.task_runs', '2026-05-01')")
        assert made.fetchone() == ("task_runs_p202605",)
        where = conn.execute("SELECT tableoid::regclass::text FROM etl_audit.task_runs WHERE run_id = 'r1'")
        assert where.fetchone() == ("etl_audit.task_runs_p202605",)


def test_create_monthly_partition_bounds_are_utc_whatever_the_session_time_zone(
    pg_server: Any, ledger_db: str
) -> None:
    with psycopg.connect(
        pg_server.conninfo(ledger_db, options="-c TimeZone=Asia/Kolkata"), autocommit=True
    ) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO etl_audit.task_runs (pipeline, run_id, task_id, started_at) "
            "VALUES ('p', 'r1', 't', '2026-03-31T20:00:00Z'), ('p', 'r2', 't', '2026-02-28T20:00:00Z')"
        )
        created = conn.execute(
            "SELECT etl_audit.create_monthly_partition('etl_audit.task_runs', '2026-03-01')"
        )
        assert created.fetchone() == ("task_runs_p202603",)
        assert conn.execute("SHOW TimeZone").fetchone() == ("Asia/Kolkata",)  # the caller's is untouched
        conn.execute("SET TimeZone = 'UTC'")
        bounds = dict(_partitions(conn, "etl_audit.task_runs"))
        assert bounds["task_runs_p202603"] == (
            "FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-04-01 00:00:00+00')"
        )
        placed = dict(
            conn.execute("SELECT run_id, tableoid::regclass::text FROM etl_audit.task_runs").fetchall()
        )
        assert placed == {"r1": "etl_audit.task_runs_p202603", "r2": "etl_audit.task_runs_default"}
    # The Python maintenance reads those bounds (midnight UTC) and carries on around them.
    with psycopg.connect(pg_server.conninfo(ledger_db)) as conn:
        maintenance.prepare_session(conn)
        runner = DdlRunner(conn, logging.getLogger("test"))
        report = maintenance.ensure_partitions(
            runner, "etl_audit.task_runs", "month", start="2026-02-01", premake=1, today=date(2026, 3, 15)
        )
        assert report.created == ["etl_audit.task_runs_p202602", "etl_audit.task_runs_p202604"]
        assert report.skipped == ["etl_audit.task_runs_p202603"] and report.rows_moved == 1


def _rollup(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM etl_audit.pipeline_run_rollup ORDER BY 1, 2, 3, 4").fetchall()


def test_moving_runs_out_of_the_default_partition_keeps_the_rollup_exact(
    pg_server: Any, ledger_db: str
) -> None:
    """ensure, drain and create_monthly_partition move rows between partitions: the rollup must not
    count them out (the default's cloned row trigger) without counting them back in."""
    with psycopg.connect(pg_server.conninfo(ledger_db, options="-c TimeZone=UTC"), autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            'INSERT INTO etl_audit.pipeline_runs (pipeline, run_id, started_at, finished_at, status, "rows", bytes) '
            "SELECT 'p' || (i % 2), 'r' || i, timestamptz '2026-01-03 10:00+00' + (i % 5) * interval '1 month', "
            "timestamptz '2026-01-03 10:00+00' + (i % 5) * interval '1 month' + i * interval '7 seconds', "
            "CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'success' END, i * 10, i * 100 "
            "FROM generate_series(1, 40) i"
        )
        expected = _rollup(conn)
        assert sum(r[4] for r in expected) == 40

        def check() -> None:
            assert _rollup(conn) == expected
            assert conn.execute("SELECT etl_audit.rebuild_pipeline_run_rollup()").fetchone() is not None
            assert _rollup(conn) == expected  # what a rebuild from the runs gives

        with psycopg.connect(pg_server.conninfo(ledger_db)) as work:
            maintenance.prepare_session(work)
            runner = DdlRunner(work, logging.getLogger("test"))
            ensured = maintenance.ensure_partitions(
                runner,
                "etl_audit.pipeline_runs",
                "month",
                start="2026-01-01",
                premake=0,
                today=date(2026, 2, 9),
            )
            assert ensured.rows_moved == 16
            check()
            created = conn.execute(
                "SELECT etl_audit.create_monthly_partition('etl_audit.pipeline_runs', '2026-03-01')"
            ).fetchone()
            assert created == ("pipeline_runs_p202603",)
            check()
            drained = maintenance.drain_default(runner, "etl_audit.pipeline_runs", "month")
            assert drained.rows_moved == 16
            check()
        assert conn.execute("SELECT count(*) FROM etl_audit.pipeline_runs_default").fetchone() == (0,)
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, tgenabled::text FROM pg_trigger "
            "WHERE tgname = 'pipeline_runs_rollup_sync' ORDER BY 1"
        ).fetchall()
        assert len(triggers) == 7 and {mode for _, mode in triggers} == {"O"}  # parent, default, 5 months
        # And the trigger still counts real changes afterwards.
        conn.execute("UPDATE etl_audit.pipeline_runs SET status = 'failed' WHERE run_id = 'r1'")
        live = _rollup(conn)
        conn.execute("SELECT etl_audit.rebuild_pipeline_run_rollup()")
        assert _rollup(conn) == live


def test_ledger_row_records_where_an_attempt_resumed(pg_server: Any, ledger_db: str) -> None:
    conninfo = pg_server.conninfo(ledger_db)
    with psycopg.connect(conninfo) as conn:
        migrate(conn)
    started = datetime(2026, 3, 1, 12, tzinfo=UTC)
    writer = LedgerWriter(lambda: psycopg.connect(conninfo), logging.getLogger("test"))
    attempt = TaskAttempt("p", "run1", started, "load", -1, 2, started, "s.src", "d.dst")
    writer.started(attempt)
    writer.finished(attempt, {"rows": 5, "resumed_from": [1200, None]}, None)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT try_number, status, rows, resumed_from FROM etl_audit.task_runs WHERE run_id = 'run1'"
        ).fetchone()
    assert row == (2, "success", 5, "[1200, None]")


def test_a_ledger_without_the_strategy_column_still_records_the_end(pg_server: Any, ledger_db: str) -> None:
    """A ledger migrated before 004 (no task_runs.strategy): the attempt still ends 'success', not 'running'."""
    conninfo = pg_server.conninfo(ledger_db)
    with psycopg.connect(conninfo) as conn:
        migrate(conn)
        conn.execute("ALTER TABLE etl_audit.task_runs DROP COLUMN strategy")
    started = datetime(2026, 3, 1, 12, tzinfo=UTC)
    writer = LedgerWriter(lambda: psycopg.connect(conninfo), logging.getLogger("test"))
    attempt = TaskAttempt("p", "run-old", started, "load", -1, 1, started, "s.src", "d.dst")
    writer.started(attempt)
    writer.finished(attempt, {"rows": 7, "strategy": "append"}, None)
    with psycopg.connect(conninfo) as conn:
        task = conn.execute(
            "SELECT status, rows FROM etl_audit.task_runs WHERE run_id = 'run-old'"
        ).fetchone()
        run = conn.execute("SELECT rows FROM etl_audit.pipeline_runs WHERE run_id = 'run-old'").fetchone()
    assert (task, run) == (("success", 7), (7,))


def test_one_conflict_rule_for_every_writer_of_a_pipeline_run(pg_server: Any, ledger_db: str) -> None:
    """ledger/runs.py is the one writer of pipeline_runs: an open (the listener's, or an attempt's) leaves an
    existing row as it is, so a late attempt cannot reopen a finished run; a close upserts the outcome."""
    conninfo = pg_server.conninfo(ledger_db)
    with psycopg.connect(conninfo) as conn:
        migrate(conn)
    started = datetime(2026, 3, 1, 12, tzinfo=UTC)
    run = PipelineRun("p", "run-c", started)
    with psycopg.connect(conninfo) as conn:
        runs.open_run(conn, run)  # the DAG-run listener, first
    log = logging.getLogger("test")
    attempt = TaskAttempt("p", "run-c", started, "load", -1, 1, started, "s.src", "d.dst")
    assert attempt.run == run
    writer = LedgerWriter(lambda: psycopg.connect(conninfo), log)
    writer.started(attempt)  # the same row: left as it is
    writer.finished(attempt, {"rows": 5, "bytes": 50}, None)
    finished = started + timedelta(minutes=1)
    with psycopg.connect(conninfo) as conn:
        runs.close_run(conn, run, "failed", finished, "boom")
        runs.close_run(conn, run, "failed", finished, None)  # a close without an error keeps the one there
    late = TaskAttempt("p", "run-c", started, "load", -1, 2, finished, "s.src", "d.dst")
    LedgerWriter(lambda: psycopg.connect(conninfo), log).started(late)
    with psycopg.connect(conninfo) as conn:
        runs.open_run(conn, run)
        rows = conn.execute(
            'SELECT status, "rows", bytes, finished_at, error FROM etl_audit.pipeline_runs WHERE run_id = %s',
            ("run-c",),
        ).fetchall()
        tasks = conn.execute(
            "SELECT try_number, status FROM etl_audit.task_runs WHERE run_id = 'run-c' ORDER BY try_number"
        ).fetchall()
    assert rows == [("failed", 5, 50, finished, "boom")]
    assert tasks == [(1, "success"), (2, "running")]  # the late attempt still records itself


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
            "SELECT run_id, status, rows, bytes > 0, seconds > 0, peak_rss_mb > 0, error, resumed_from "
            "FROM etl_audit.task_runs WHERE pipeline = 'transfer_ledger' ORDER BY started_at"
        ).fetchall()
        pipelines = conn.execute(
            "SELECT run_id, status, rows, finished_at IS NOT NULL FROM etl_audit.pipeline_runs "
            "WHERE pipeline = 'transfer_ledger' ORDER BY started_at"
        ).fetchall()
    assert rows[0][:6] == (run.run_id, "success", 1_500, True, True, True)
    with psycopg.connect(pg_server.conninfo(ledger_db)) as conn:
        strategy = conn.execute(
            "SELECT strategy FROM etl_audit.task_runs WHERE run_id = %s", (run.run_id,)
        ).fetchone()
        chunks = conn.execute(
            'SELECT task_id, map_index, try_number, seq, "rows", bytes > 0, seconds >= 0, rss_mb > 0 '
            "FROM etl_audit.task_chunks WHERE pipeline = 'transfer_ledger' AND run_id = %s "
            "ORDER BY committed_at, seq",
            (run.run_id,),
        ).fetchall()
    assert strategy == ("append",)
    # chunk_rows=500: every committed chunk is one row, in order (the Transfer view's series)
    assert chunks == [("transfer", -1, 1, seq, 500, True, True, True) for seq in (1, 2, 3)]
    assert rows[0][7] is None and rows[1][7] is None  # fresh attempts: nothing to resume from
    assert rows[1][0] == bad.run_id and rows[1][1] == "failed" and "nope.nope" in rows[1][6]
    # Attempts record themselves; the DAG-run listener closes the pipeline run with the run's outcome.
    assert pipelines == [(run.run_id, "success", 1_500, True), (bad.run_id, "failed", 0, True)]


def test_chunk_rows_are_written_in_batches_while_the_transfer_runs(pg_server: Any, ledger_db: str) -> None:
    conninfo = pg_server.conninfo(ledger_db)
    with psycopg.connect(conninfo) as conn:
        migrate(conn)
    started = datetime.now(UTC)
    attempt = TaskAttempt("p", "run1", started, "load", 3, 2, started, "s.src", "d.dst")
    recorder = ChunkRecorder(
        lambda: psycopg.connect(conninfo),
        attempt,
        logging.getLogger("test"),
        ChunkSettings(batch_rows=2, interval_s=60),
    )

    def recorded() -> int:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SELECT count(*) FROM etl_audit.task_chunks WHERE run_id = 'run1'").fetchone()
        return int(row[0]) if row else 0

    with recorder:
        for seq in (1, 2):
            recorder.chunk_committed(ChunkEvent(seq, seq % 2, 100, 100, 4096, 0.01, time.time()))
        deadline = time.monotonic() + 10
        while recorded() < 2 and time.monotonic() < deadline:  # a full batch goes before the interval
            time.sleep(0.05)
        assert recorded() == 2
        recorder.chunk_committed(ChunkEvent(3, 1, 100, 100, 4096, 0.01, time.time()))
        time.sleep(0.5)
        assert recorded() == 2  # half a batch waits for the interval (60 s) or the end
    assert recorded() == 3 and recorder.written == 3 and recorder.dropped == 0  # the rest when it closes
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT map_index, try_number, stream, seq, rss_mb > 0 FROM etl_audit.task_chunks ORDER BY seq"
        ).fetchall()
    assert rows == [(3, 2, 1, 1, True), (3, 2, 0, 2, True), (3, 2, 1, 3, True)]


def test_an_unreachable_ledger_never_fails_or_holds_the_transfer(
    src_db: Any, dst_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine with the operator's chunk recording, the ledger a port nobody listens on: every row
    arrives, the failure is logged once and counted, and later chunks are dropped at once."""
    create_orders(src_db.connect(), schema=src_db.schema, rows=2_000, days=2)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    dead = f"host=127.0.0.1 port={free_port()} dbname=nope user=nope connect_timeout=2"
    now = datetime.now(UTC)
    attempt = TaskAttempt("p", "run1", now, "load", -1, 1, now, "s", "d")
    errors: list[int] = []
    log = logging.getLogger("test.chunks")
    recorder = ChunkRecorder(
        lambda: psycopg.connect(dead),
        attempt,
        log,
        ChunkSettings(batch_rows=1),
        on_error=lambda: errors.append(1),
    )
    spec = TransferSpec(
        source_table=f"{src_db.schema}.orders",
        destination_table=f"{dst_db.schema}.orders",
        checkpoint_schema=dst_db.schema,
        chunk_rows=200,
    )
    with caplog.at_level(logging.WARNING, logger="test.chunks"), recorder, recording_chunks(recorder):
        summary = run_transfer(spec, src_db.conninfo, dst_db.conninfo)
    assert summary.rows == 2_000 and summary.chunks == 10
    assert recorder.written == 0 and recorder.dropped == 10 and recorder.errors == 1 and errors == [1]
    warnings = [r.getMessage() for r in caplog.records if r.name == "test.chunks"]
    assert len(warnings) == 1 and "could not record the chunks of load" in warnings[0], warnings

"""StreamingTransferOperator run for real through dag.test(): modes, window, transform, retry, errors."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql

from benchmarks.datagen import ORDERS_COLUMNS, create_empty_like_orders, create_orders
from etl_platform.transfer.checkpoint import CheckpointStore
from harness import run_dag, task_outcomes, xcom_value
from tests.transfer_fixtures import row_count, table_digest

pytestmark = pytest.mark.airflow

ROWS = 4_800  # 20 days of orders, 240 a day


@pytest.fixture
def orders(src_db: Any, dst_db: Any) -> dict[str, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    create_orders(src, schema=src_db.schema, rows=ROWS, days=20)
    create_empty_like_orders(dst, "orders", schema=dst_db.schema)
    return {
        "src": src,
        "dst": dst,
        "conf": {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"},
        "conns": {"etl_test_src": src_db.uri(), "etl_test_dst": dst_db.uri()},
    }


def _digest(conn: Any, schema: str, where: str = "TRUE") -> str:
    return table_digest(conn, schema, "orders", ORDERS_COLUMNS, where)


@pytest.mark.parametrize("mode", ["append", "truncate", "upsert"])
def test_each_write_mode_through_dag_test(
    orders: dict[str, Any], src_db: Any, dst_db: Any, mode: str
) -> None:
    if mode != "append":  # stale rows that truncate must remove and upsert must overwrite
        orders["dst"].execute(
            sql.SQL(
                "INSERT INTO {} SELECT * FROM (VALUES (1, 1, now(), 'stale', 1.0, 1, NULL::numeric, 'x', 'XX', NULL)) v"
            ).format(sql.Identifier(dst_db.schema, "orders"))
        )
    run = run_dag(f"transfer_{mode}", conf=orders["conf"], conn_env=orders["conns"])
    assert task_outcomes(run)["transfer"].state == "success"
    summary = xcom_value(run, "transfer")
    assert summary["rows"] == ROWS and summary["write_mode"] == mode and summary["parallelism"] == 2
    assert set(summary) >= {
        "rows",
        "bytes",
        "chunks",
        "seconds",
        "rows_per_second",
        "peak_rss_mb",
        "resumed_from",
    }
    assert summary["copy_format"] == "binary"
    assert _digest(orders["dst"], dst_db.schema) == _digest(orders["src"], src_db.schema)


@pytest.mark.parametrize("mode", ["append", "delete_insert"])
def test_daily_run_moves_exactly_its_data_interval(
    orders: dict[str, Any], src_db: Any, dst_db: Any, mode: str
) -> None:
    day = "order_ts >= '2026-01-05' AND order_ts < '2026-01-06'"
    # delete_insert is idempotent per interval: a second run (a new run id) replaces the same rows.
    for _ in range(2 if mode == "delete_insert" else 1):
        run = run_dag(
            f"transfer_daily_{mode}",
            conf=orders["conf"],
            conn_env=orders["conns"],
            logical_date=datetime(2026, 1, 6, tzinfo=UTC),
        )
        assert task_outcomes(run)["transfer"].state == "success"
    assert _digest(orders["dst"], dst_db.schema) == _digest(orders["src"], src_db.schema, day)
    assert row_count(orders["dst"], dst_db.schema, "orders") == 240


def test_transform_through_dag_test(orders: dict[str, Any], src_db: Any, dst_db: Any) -> None:
    orders["dst"].execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN processed_at timestamptz NOT NULL").format(
            sql.Identifier(dst_db.schema, "orders")
        )
    )
    run = run_dag("transfer_transform", conf=orders["conf"], conn_env=orders["conns"])
    summary = xcom_value(run, "transfer")
    assert summary["copy_format"] == "csv" and summary["rows"] == ROWS
    assert _digest(orders["dst"], dst_db.schema) == _digest(orders["src"], src_db.schema)
    stamped = (
        orders["dst"]
        .execute(
            sql.SQL("SELECT count(*) FROM {} WHERE processed_at > now() - interval '1 hour'").format(
                sql.Identifier(dst_db.schema, "orders")
            )
        )
        .fetchone()
    )
    assert stamped == (ROWS,)


def test_failed_attempt_is_retried_and_resumes_after_the_last_chunk(
    orders: dict[str, Any], src_db: Any, dst_db: Any
) -> None:
    dst, schema = orders["dst"], dst_db.schema
    dst.execute(sql.SQL("CREATE SEQUENCE {}").format(sql.Identifier(schema, "fault_seq")))
    dst.execute(
        sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 2222 AND nextval({seq}::regclass) = 1 THEN RAISE EXCEPTION 'injected fault'; END IF; "
            "RETURN NEW; END $$"
        ).format(fn=sql.Identifier(schema, "fault"), seq=sql.Literal(f"{schema}.fault_seq"))
    )
    dst.execute(
        sql.SQL("CREATE TRIGGER fault BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(schema, "orders"), sql.Identifier(schema, "fault")
        )
    )
    run = run_dag("transfer_retry", conf=orders["conf"], conn_env=orders["conns"])
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("success", 2)
    summary = xcom_value(run, "transfer")
    assert summary["resumed_from"] == "2000"  # chunks of 500: four committed before the fault
    assert summary["rows_before_resume"] == 2_000 and summary["rows_read"] == ROWS - 2_000
    assert _digest(dst, schema) == _digest(orders["src"], src_db.schema)


def test_bad_input_fails_without_retrying_and_moves_nothing(orders: dict[str, Any], dst_db: Any) -> None:
    conf = {**orders["conf"], "source_table": "no_such_schema.orders"}
    run = run_dag("transfer_retry", conf=conf, conn_env=orders["conns"])
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # AirflowFailException: no retries
    assert row_count(orders["dst"], dst_db.schema, "orders") == 0


def _task_output(capfd: pytest.CaptureFixture[str]) -> str:
    """What dag.test() printed: the task's log lines, its traceback and error message included."""
    out, err = capfd.readouterr()
    return out + err


def test_unknown_connection_fails_clearly(orders: dict[str, Any], capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    run = run_dag(  # etl_test_src is not defined; the DAG allows two retries
        "transfer_retry", conf=orders["conf"], conn_env={"etl_test_dst": orders["conns"]["etl_test_dst"]}
    )
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # AirflowFailException: no retries
    output = _task_output(capfd)
    assert "AirflowFailException: Airflow connection 'etl_test_src' is not defined" in output


def test_unknown_connection_is_not_retryable(airflow_home: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl_platform.hooks.postgres import EtlPostgresHook

    with pytest.raises(AirflowFailException, match="connection 'etl_no_such_conn' is not defined"):
        EtlPostgresHook("etl_no_such_conn").connection_factory()


@pytest.mark.parametrize(
    ("key_column", "expected"),
    [
        ("", "key_column is required with source_sql"),
        ("no_such_col", "key_column 'no_such_col' is not an output column of source_sql (columns: id, "),
    ],
)
def test_bad_source_sql_settings_fail_once_naming_the_column(
    orders: dict[str, Any],
    src_db: Any,
    dst_db: Any,
    capfd: pytest.CaptureFixture[str],
    key_column: str,
    expected: str,
) -> None:
    query = (
        sql.SQL("SELECT * FROM {}").format(sql.Identifier(src_db.schema, "orders")).as_string(orders["src"])
    )
    conf = {
        "source_sql": query,
        "key_column": key_column,
        "destination_table": orders["conf"]["destination_table"],
    }
    capfd.readouterr()
    run = run_dag("transfer_sql", conf=conf, conn_env=orders["conns"])
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)
    assert expected in _task_output(capfd)
    assert row_count(orders["dst"], dst_db.schema, "orders") == 0


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        (
            "ALTER TABLE {} RENAME COLUMN status TO state",
            "source columns ['status'] of {src}.orders have no column of the same name in {dst}.orders",
        ),
        (
            "ALTER TABLE {} DROP COLUMN customer_id, ADD COLUMN customer_id date",
            "columns of {dst}.orders cannot take the {src}.orders column types: 'customer_id': integer -> date",
        ),
    ],
)
def test_column_mismatch_fails_once_naming_table_and_column(
    orders: dict[str, Any],
    src_db: Any,
    dst_db: Any,
    capfd: pytest.CaptureFixture[str],
    ddl: str,
    expected: str,
) -> None:
    orders["dst"].execute(sql.SQL(ddl).format(sql.Identifier(dst_db.schema, "orders")))  # type: ignore[arg-type]
    capfd.readouterr()
    run = run_dag("transfer_retry", conf=orders["conf"], conn_env=orders["conns"])
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)
    assert expected.format(src=src_db.schema, dst=dst_db.schema) in _task_output(capfd)
    assert row_count(orders["dst"], dst_db.schema, "orders") == 0


def test_truncate_resumes_after_a_failed_attempt_and_is_never_half_loaded(
    orders: dict[str, Any], src_db: Any, dst_db: Any
) -> None:
    dst, schema = orders["dst"], dst_db.schema
    table = sql.Identifier(schema, "orders")
    dst.execute(
        sql.SQL(
            "INSERT INTO {} SELECT * FROM (VALUES (1, 1, now(), 'stale', 1.0, 1, NULL::numeric, 'x', 'XX', NULL)) v"
        ).format(table)
    )
    # Staged chunks land in a table that does not exist yet; the checkpoint update commits in the
    # same transaction, so failing it once (at the fourth chunk) fails that chunk, whatever the mode.
    checkpoints = sql.Identifier("etl_platform", "transfer_checkpoints")
    CheckpointStore("etl_platform", "setup").ensure(dst)
    dst.execute(sql.SQL("CREATE SEQUENCE {}").format(sql.Identifier(schema, "fault_seq")))
    dst.execute(
        sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.rows >= 2000 AND nextval({seq}::regclass) = 1 THEN RAISE EXCEPTION 'injected fault'; "
            "END IF; RETURN NEW; END $$"
        ).format(
            fn=sql.Identifier(schema, "fault"),
            seq=sql.Literal(sql.Identifier(schema, "fault_seq").as_string(dst)),
        )
    )
    trigger = sql.Identifier(f"fault_{schema}")
    dst.execute(
        sql.SQL(
            "CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW "
            "WHEN (NEW.transfer_id LIKE 'transfer_retry_truncate/%') EXECUTE FUNCTION {}()"
        ).format(trigger, checkpoints, sql.Identifier(schema, "fault"))
    )
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        with dst_db.connect() as reader:
            while not stop.is_set():
                seen.add(row_count(reader, schema, "orders"))
                time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = run_dag("transfer_retry_truncate", conf=orders["conf"], conn_env=orders["conns"])
    finally:
        stop.set()
        watcher.join()
        dst.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, checkpoints))
    outcome = task_outcomes(run)["transfer"]
    assert (outcome.state, outcome.try_number) == ("success", 2)
    summary = xcom_value(run, "transfer")
    assert summary["resumed_from"] == "1500"  # chunks of 500: three staged before the fault
    assert summary["rows_before_resume"] == 1_500 and summary["rows_read"] == ROWS - 1_500
    assert _digest(dst, schema) == _digest(orders["src"], src_db.schema)
    assert seen <= {1, ROWS} and 1 in seen, seen  # the stale row, then every row: never anything between


def test_nonsense_settings_are_refused_at_parse_time() -> None:
    from airflow.sdk import DAG

    from etl_platform.operators.transfer import StreamingTransferOperator

    with DAG("parse_check", schedule=None), pytest.raises(ValueError, match=r"bad: write_mode 'merge'"):
        StreamingTransferOperator(
            task_id="bad",
            source_conn_id="a",
            destination_conn_id="b",
            source_table="s.t",
            destination_table="d.t",
            write_mode="merge",
        )
    with DAG("parse_check2", schedule=None), pytest.raises(ValueError, match="parallelism"):
        StreamingTransferOperator(
            task_id="bad",
            source_conn_id="a",
            destination_conn_id="b",
            source_table="s.t",
            destination_table="d.t",
            parallelism=0,
        )


def test_the_error_branch_decides_retries_and_a_rejected_chunk_keeps_its_retries() -> None:
    """Terminal errors fail the task at once; a rejected chunk is retried as before the branches, even
    when its SQLSTATE is not a momentary one (the injected-fault retry above depends on it)."""
    from etl_platform.operators.transfer import retry_cannot_help
    from etl_platform.transfer.errors import (
        ChunkLoadError,
        SourceUnavailableError,
        StagingLostError,
        TransferConfigError,
        TransferError,
    )

    assert retry_cannot_help(TransferConfigError("bad setting"))
    assert retry_cannot_help(SourceUnavailableError("wrong password", retryable=False))
    assert not retry_cannot_help(SourceUnavailableError("refused", retryable=True))
    assert not retry_cannot_help(StagingLostError("staging emptied"))
    assert not retry_cannot_help(TransferError("neither branch"))
    assert not retry_cannot_help(RuntimeError("anything else"))
    for sqlstate in ("P0001", "23505", "40P01", None):
        assert not retry_cannot_help(ChunkLoadError("rejected", sqlstate=sqlstate))


def test_a_run_without_a_data_interval_renders_when_no_window_is_asked_for() -> None:
    """Airflow 3's manual runs have no data interval: only an incremental transfer may need one."""
    from airflow.sdk import DAG
    from jinja2 import UndefinedError

    from etl_platform.operators.transfer import StreamingTransferOperator

    no_interval = {"ds": None, "params": {}}  # what a run triggered without a logical date renders with
    common = {
        "source_conn_id": "s",
        "destination_conn_id": "d",
        "source_table": "a.b",
        "destination_table": "c.d",
    }
    with DAG("transfer_render_check", schedule=None):
        whole_table = StreamingTransferOperator(task_id="whole_table", **common)
        incremental = StreamingTransferOperator(task_id="incremental", incremental_column="ts", **common)
    whole_table.render_template_fields(no_interval)
    assert (whole_table.window_start, whole_table.window_end) == (None, None)
    with pytest.raises(UndefinedError, match="data_interval_start"):
        incremental.render_template_fields(no_interval)  # its window must come from somewhere: say so

"""What the operator reports outside XCom: StatsD metrics through Airflow's Stats, connection errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest

from benchmarks.datagen import create_empty_like_orders, create_orders
from harness.airflow_run import connections_env
from harness.statsd import dags_test_with_statsd

pytestmark = pytest.mark.airflow


def test_statsd_receives_transfer_metrics_tagged_by_dag_and_task(
    airflow_home: Path, src_db: Any, dst_db: Any
) -> None:
    create_orders(src_db.connect(), schema=src_db.schema, rows=1_200, days=3)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    conf = {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"}
    done = dags_test_with_statsd(
        "transfer_append",
        conf=conf,
        env={"AIRFLOW_CONN_ETL_TEST_SRC": src_db.uri(), "AIRFLOW_CONN_ETL_TEST_DST": dst_db.uri()},
    )
    assert done.returncode == 0, done.output[-6000:]
    lines = done.lines
    ours = [line for line in lines if ".etl.transfer." in line]
    rows = [line for line in ours if line.startswith("airflow.etl.transfer.rows,")]
    assert rows, f"no etl.transfer.rows among {ours[:10]} (all: {lines[:10]})"
    assert all("dag_id=transfer_append" in line and "task_id=transfer" in line for line in rows)
    assert sum(int(line.split(":")[1].split("|")[0]) for line in rows) == 1_200
    assert any(line.startswith("airflow.etl.transfer.chunk_duration,") and "|ms" in line for line in ours)
    assert any(line.startswith("airflow.etl.transfer.bytes,") for line in ours)
    assert any(line.startswith("airflow.dag_processing") or "ti." in line for line in lines)


def test_unknown_connection_is_named(airflow_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl_platform.hooks.postgres import EtlPostgresHook

    with pytest.raises(AirflowFailException, match="connection 'no_such_conn' is not defined"):
        EtlPostgresHook("no_such_conn").conninfo()


def test_hook_builds_working_connections(
    airflow_home: Path, src_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl_platform.hooks.postgres import EtlPostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_ETL_HOOK_CHECK", src_db.uri())
    hook = EtlPostgresHook("etl_hook_check")
    with hook.get_conn() as conn:
        assert conn.execute("SELECT current_schema()").fetchone() == (src_db.schema,)
    assert hook.test_connection() == (True, "Connection successfully tested")


def test_the_password_reaches_no_log_and_no_xcom(
    airflow_home: Path,
    src_db: Any,
    dst_db: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from etl_platform.hooks.postgres import EtlPostgresHook
    from harness import run_dag, task_outcomes, xcom_value

    create_orders(src_db.connect(), schema=src_db.schema, rows=1_200, days=3)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    # A trust-authenticated server never asks for it, so any password connects; a real one is kept.
    password = src_db.server.password or f"pw-{secrets.token_hex(12)}"
    server = dataclasses.replace(src_db.server, password=password)
    conns = {
        "etl_test_src": server.uri(src_db.dbname, options=f"-csearch_path={src_db.schema}"),
        "etl_test_dst": server.uri(dst_db.dbname, options=f"-csearch_path={dst_db.schema}"),
    }
    with connections_env(conns):  # the password is really in play: the hook hands it to libpq
        assert f"password={password}" in EtlPostgresHook("etl_test_src").conninfo()
    caplog.set_level(logging.DEBUG)
    capfd.readouterr()
    conf = {"source_table": f"{src_db.schema}.orders", "destination_table": f"{dst_db.schema}.orders"}
    run = run_dag("transfer_append", conf=conf, conn_env=conns)
    assert task_outcomes(run)["transfer"].state == "success"
    out, err = capfd.readouterr()
    assert "transfer summary" in out + err  # the task's log was captured
    assert password not in out + err
    assert caplog.records
    for record in caplog.records:
        assert password not in record.getMessage() and password not in str(record.__dict__), record
    summary = xcom_value(run, "transfer")
    assert summary["rows"] == 1_200
    assert password not in json.dumps(summary, default=str)
    logs = Path(airflow_home, "logs")
    if logs.exists():
        for path in logs.rglob("*"):
            if path.is_file():
                assert password not in path.read_text(errors="replace"), path

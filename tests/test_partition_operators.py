"""The partition operators run for real through dag.test(): reports in XCom, dry run, config errors.

The DAGs live in tests/dags/partition_dags.py and take the table from params; connection etl_test_dst.
The operators use the real clock, so the expected partitions are computed from today's date (UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from harness import SchemaDb, run_dag, task_outcomes, xcom_value
from harness.statsd import dags_test_with_statsd

pytestmark = pytest.mark.airflow

Conn = psycopg.Connection[Any]


def shift(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partitions(conn: Conn, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY 1",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()
    return [r[0] for r in rows]


def count(conn: Conn, schema: str, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def events(dst_db: SchemaDb, airflow_home: object) -> dict[str, Any]:
    """ev: monthly on a timestamptz, only a default partition, 3 rows in each of a spread of months."""
    conn = dst_db.connect()
    conn.execute("SET TimeZone = 'UTC'")
    s = dst_db.schema
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigserial, ts timestamptz NOT NULL, w int NOT NULL DEFAULT 0, "
            "PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)"
        ).format(sql.Identifier(s, "ev"))
    )
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            sql.Identifier(s, "ev_default"), sql.Identifier(s, "ev")
        )
    )
    current = datetime.now(UTC).date().replace(day=1)
    months = [-20, -14, -13, -12, -1, 0, 1, 6]  # relative to the current month
    stamps = [
        datetime.combine(shift(current, m), datetime.min.time(), UTC) + timedelta(days=d)
        for m in months
        for d in (0, 9, 20)
    ]
    conn.execute(
        sql.SQL("INSERT INTO {} (ts) SELECT unnest(%s::timestamptz[])").format(sql.Identifier(s, "ev")),
        (stamps,),
    )
    return {
        "conn": conn,
        "current": current,
        "conf": {
            "table": dst_db.table("ev"),
            "start": shift(current, -14).isoformat(),
            "retention": "12 months",
        },
        "conns": {"etl_test_dst": dst_db.uri()},
    }


def test_maintenance_dag_runs_all_four_operators(events: dict[str, Any], dst_db: SchemaDb) -> None:
    s, conn, current = dst_db.schema, events["conn"], events["current"]
    run = run_dag("partition_maintenance", conf=events["conf"], conn_env=events["conns"])
    outcomes = task_outcomes(run)
    assert {t: (o.state, o.try_number) for t, o in outcomes.items()} == {
        t: ("success", 1) for t in ("ensure", "drain", "index", "retention")
    }

    name = lambda m: f"ev_p{shift(current, m):%Y%m}"  # noqa: E731
    ensure = xcom_value(run, "ensure")
    assert ensure["action"] == "ensure" and ensure["table"] == f"{s}.ev" and ensure["dry_run"] is False
    assert ensure["created"] == [f"{s}.{name(m)}" for m in range(-14, 3)]  # back-fill .. premake 2
    assert ensure["rows_moved"] == 3 * 6  # months -14, -13, -12, -1, 0, 1
    drain = xcom_value(run, "drain")
    assert drain["created"] == [f"{s}.{name(-20)}", f"{s}.{name(6)}"] and drain["rows_moved"] == 6
    index = xcom_value(run, "index")
    assert len(index["indexed"]) == 17 + 2 + 1  # every partition and the default one
    retention = xcom_value(run, "retention")
    # now - 12 months falls inside month -12: -20, -14 and -13 end before it; -12 straddles and stays.
    assert retention["detached"] == [f"{s}.{name(m)}" for m in (-20, -14, -13)]
    assert retention["action"] == "retention:keep" and retention["dropped"] == []
    # ev has a default partition: PostgreSQL refuses DETACH ... CONCURRENTLY, and the XCom says so.
    assert len(retention["warnings"]) == 1
    assert retention["warnings"][0].startswith(
        f"{s}.ev has a default partition ({s}.ev_default): PostgreSQL refuses DETACH PARTITION ... "
        "CONCURRENTLY beside one, so 3 partition(s) were detached with a plain DETACH"
    )
    assert ensure["warnings"] == [] and drain["warnings"] == []

    attached = partitions(conn, s, "ev")
    assert attached == sorted(["ev_default", *(name(m) for m in range(-12, 3)), name(6)])
    assert count(conn, s, "ev_default") == 0 and count(conn, s, "ev") == 24 - 9
    assert all(count(conn, s, name(m)) == 3 for m in (-20, -14, -13))  # detached, kept intact
    valid = conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
        (sql.Identifier(s, "ev_w_idx").as_string(conn),),
    ).fetchone()
    assert valid == (True,)


def test_dry_run_operator_reports_planned_sql_and_changes_nothing(
    events: dict[str, Any], dst_db: SchemaDb
) -> None:
    s, conn = dst_db.schema, events["conn"]
    run = run_dag("partition_dry_run", conf=events["conf"], conn_env=events["conns"])
    assert task_outcomes(run)["ensure"].state == "success"
    report = xcom_value(run, "ensure")
    assert report["dry_run"] is True and len(report["created"]) == 17
    assert any("ATTACH PARTITION" in q for q in report["planned_sql"])
    assert partitions(conn, s, "ev") == ["ev_default"] and count(conn, s, "ev_default") == 24


def test_config_error_fails_the_task_without_retries(events: dict[str, Any], dst_db: SchemaDb) -> None:
    conn = events["conn"]
    conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(dst_db.schema, "plain")))
    conf = {**events["conf"], "table": dst_db.table("plain")}
    run = run_dag("partition_config_error", conf=conf, conn_env=events["conns"])
    outcome = task_outcomes(run)["ensure"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # AirflowFailException: retries=2 unused
    assert partitions(conn, dst_db.schema, "ev") == ["ev_default"]


def test_a_lock_timeout_is_transient_the_task_uses_its_retries(
    events: dict[str, Any], dst_db: SchemaDb
) -> None:
    """The other branch of test_config_error_fails_the_task_without_retries: no AirflowFailException."""
    s = dst_db.schema
    with psycopg.connect(dst_db.conninfo) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(s, "ev")))
        run = run_dag("partition_lock_timeout", conf=events["conf"], conn_env=events["conns"])
        holder.rollback()
    outcome = task_outcomes(run)["ensure"]
    assert (outcome.state, outcome.try_number) == (
        "failed",
        2,
    )  # retries=1 used: a lock may be free next time
    assert partitions(events["conn"], s, "ev") == ["ev_default"]


def test_unknown_table_fails_the_task_without_retries(events: dict[str, Any], dst_db: SchemaDb) -> None:
    conf = {**events["conf"], "table": dst_db.table("no_such_table")}
    run = run_dag("partition_config_error", conf=conf, conn_env=events["conns"])
    outcome = task_outcomes(run)["ensure"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)


def test_nonsense_settings_are_refused_at_parse_time() -> None:
    from airflow.sdk import DAG

    from etl_platform.operators.partitions import (
        CreatePartitionedIndexOperator,
        DrainDefaultPartitionOperator,
        EnsurePartitionsOperator,
        PartitionRetentionOperator,
    )

    common = {"postgres_conn_id": "etl_test_dst", "table": "s.t"}
    with DAG("partition_parse_check", schedule=None):
        with pytest.raises(ValueError, match=r"^bad_interval: interval 'fortnight' is not one of"):
            EnsurePartitionsOperator(task_id="bad_interval", interval="fortnight", **common)
        with pytest.raises(ValueError, match=r"^bad_premake: premake"):
            EnsurePartitionsOperator(task_id="bad_premake", premake=-1, **common)
        with pytest.raises(ValueError, match=r"^bad_step: interval 0"):
            DrainDefaultPartitionOperator(task_id="bad_step", interval=0, **common)
        with pytest.raises(ValueError, match=r"^bad_mode: mode 'purge'"):
            PartitionRetentionOperator(task_id="bad_mode", retention="1 year", mode="purge", **common)
        with pytest.raises(ValueError, match=r"^bad_attempts: max_attempts"):
            EnsurePartitionsOperator(task_id="bad_attempts", max_attempts=0, **common)
        with pytest.raises(ValueError, match=r"^bad_columns: columns"):
            CreatePartitionedIndexOperator(task_id="bad_columns", index_name="i", columns=[], **common)
        with pytest.raises(ValueError, match=r"^bad_lock: lock_timeout '2 parsecs' is not a positive"):
            DrainDefaultPartitionOperator(task_id="bad_lock", lock_timeout="2 parsecs", **common)
        with pytest.raises(ValueError, match=r"^zero_lock: lock_timeout 0 is not a positive"):
            PartitionRetentionOperator(task_id="zero_lock", retention="1 year", lock_timeout=0, **common)


def _metric(lines: list[str], name: str, task_id: str) -> list[str]:
    """`airflow.<name>,tag=value,...:<value>|<type>` lines of one task (tags ride along as InfluxDB tags)."""
    return [
        line for line in lines if line.startswith(f"airflow.{name},") and f"task_id={task_id}," in line + ","
    ]


def _value(line: str) -> float:
    return float(line.rsplit(":", 1)[1].split("|")[0])


def test_statsd_receives_partition_metrics_tagged_by_dag_task_and_table(
    events: dict[str, Any], dst_db: SchemaDb, airflow_home: Path
) -> None:
    """The DAG runs in `airflow dags test` with StatsD pointed at a real UDP socket."""
    done = dags_test_with_statsd(
        "partition_maintenance", conf=events["conf"], env={"AIRFLOW_CONN_ETL_TEST_DST": dst_db.uri()}
    )
    assert done.returncode == 0, done.output[-6000:]
    lines = done.lines
    ours = [line for line in lines if ".etl.partitions." in line]
    assert ours, f"no etl.partitions metrics among {lines[:10]}"
    table = f"table={dst_db.schema}.ev"
    assert all("dag_id=partition_maintenance" in line and table in line for line in ours), ours
    expected = {
        ("etl.partitions.created", "ensure"): 17,
        ("etl.partitions.rows_drained", "ensure"): 18,
        ("etl.partitions.created", "drain"): 2,
        ("etl.partitions.rows_drained", "drain"): 6,
        ("etl.partitions.created", "index"): 0,
        ("etl.partitions.detached", "retention"): 3,
        ("etl.partitions.dropped", "retention"): 0,
    }
    got = {key: sum(_value(line) for line in _metric(ours, *key)) for key in expected}
    assert got == expected
    for task_id in ("ensure", "drain", "index", "retention"):
        timing = _metric(ours, "etl.partitions.seconds", task_id)
        assert len(timing) == 1 and timing[0].endswith("|ms") and _value(timing[0]) > 0
    assert len(partitions(events["conn"], dst_db.schema, "ev")) == 17  # the run really did the work
    # The summary names what it did, not only how many.
    logged = done.output
    assert f"created 2 [{dst_db.schema}.ev_p" in logged and "detached 3 [" in logged, logged[-3000:]
    # The retention's warning (a plain DETACH beside the default partition) is in the task log too.
    warned = f"retention:keep {dst_db.schema}.ev: {dst_db.schema}.ev has a default partition"  # the log line
    assert warned in logged and "so 3 partition(s) were detached with a plain DETACH" in logged, logged[
        -3000:
    ]


def test_start_zero_backfills_from_zero(dst_db: SchemaDb, airflow_home: object) -> None:
    """start=0 is an integer start, not "no start" (which would begin at the highest key's interval)."""
    import logging

    from etl_platform.operators.partitions import EnsurePartitionsOperator
    from etl_platform.partitions import maintenance
    from etl_platform.partitions.ddl import DdlRunner

    conn = dst_db.connect()
    s = dst_db.schema
    conn.execute(
        sql.SQL("CREATE TABLE {} (k bigint NOT NULL) PARTITION BY RANGE (k)").format(sql.Identifier(s, "iv"))
    )
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (3000) TO (4000)").format(
            sql.Identifier(s, "iv_p3000"), sql.Identifier(s, "iv")
        )
    )
    conn.execute(sql.SQL("INSERT INTO {} VALUES (3500)").format(sql.Identifier(s, "iv")))
    operator = EnsurePartitionsOperator(
        task_id="ensure_int",
        postgres_conn_id="unused",
        table=dst_db.table("iv"),
        interval=1000,
        start=0,
        premake=0,
    )
    with psycopg.connect(dst_db.conninfo) as work:
        maintenance.prepare_session(work)
        report = operator.maintain(DdlRunner(work, logging.getLogger("test")))
    assert report.created == [f"{s}.iv_p0", f"{s}.iv_p1000", f"{s}.iv_p2000"]
    assert partitions(conn, s, "iv") == ["iv_p0", "iv_p1000", "iv_p2000", "iv_p3000"]

"""`airflow etl ...` through the real `airflow` command (a subprocess on the harness's AIRFLOW_HOME).

Each CLI start costs seconds, so independent invocations run concurrently and each test batches
its assertions.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from tests.transfer_fixtures import row_count, start_transfer_process

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ROWS, CHUNK = 60_000, 2_000
RUN_ID = "manual__2026-01-01T00:00:00+00:00"
TRANSFER_ID = f"etl_cli_dag/load_items/{RUN_ID}/-1"
OTHER_ID = f"etl_cli_dag/other_task/{RUN_ID}/-1"


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        line = next(x for x in reversed(self.out.splitlines()) if x.startswith(("[", "{")))
        return json.loads(line)

    def error_line(self) -> str:
        """The one-line message (the last stderr line; Airflow may log before it)."""
        lines = [x for x in self.err.strip().splitlines() if x.strip()]
        assert lines, f"airflow {' '.join(self.args)}: nothing on stderr; stdout:\n{self.out}"
        return lines[-1]


def etl(*args: str, env: dict[str, str]) -> Result:
    proc = subprocess.run(
        [AIRFLOW, "etl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def etl_all(calls: list[tuple[str, ...]], env: dict[str, str]) -> list[Result]:
    with ThreadPoolExecutor(max_workers=3) as pool:  # 2 cores: more only thrash
        return list(pool.map(lambda a: etl(*a, env=env), calls))


def _ident(db: Any, name: str) -> sql.Identifier:
    return sql.Identifier(db.schema, name)


def _killed_transfer(src_db: Any, dst_db: Any) -> None:
    """A transfer SIGKILLed after a few chunks: its checkpoint stays, as after a dead worker."""
    src, dst = src_db.connect(), dst_db.connect()
    for conn, db in ((src, src_db), (dst, dst_db)):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text)").format(_ident(db, "items"))
        )
    src.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'x' || g FROM generate_series(1, %s) g").format(
            _ident(src_db, "items")
        ),
        (ROWS,),
    )
    dst.execute(  # 100 ms per chunk, so the kill lands mid-transfer
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.1); "
            "RETURN NULL; END $$"
        ).format(_ident(dst_db, "slow"))
    )
    dst.execute(
        sql.SQL("CREATE TRIGGER slow AFTER INSERT ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            _ident(dst_db, "items"), _ident(dst_db, "slow")
        )
    )
    spec = {
        "source_table": src_db.table("items"),
        "destination_table": dst_db.table("items"),
        "chunk_rows": CHUNK,
        "checkpoint_id": TRANSFER_ID,
        "checkpoint_schema": dst_db.schema,
    }
    worker = start_transfer_process(src_db.conninfo, dst_db.conninfo, spec)
    checkpoints = sql.SQL("SELECT coalesce(sum(chunks), 0) FROM {}").format(
        _ident(dst_db, "transfer_checkpoints")
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            if dst.execute(checkpoints).fetchone()[0] >= 3:  # type: ignore[index]
                break
        except Exception:  # the checkpoint table may not exist yet
            pass
        time.sleep(0.02)
    assert worker.poll() is None, worker.communicate()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)


def _set_task_state(home: Path, task_id: str | None, state: str = "running") -> None:
    """A task instance row of etl_cli_dag in the harness's SQLite metadata DB (task_id None: no rows)."""
    db = sqlite3.connect(home / "airflow.db")
    try:
        db.execute("DELETE FROM task_instance WHERE dag_id = 'etl_cli_dag'")
        if task_id is not None:
            db.execute(
                "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, pool, "
                "pool_slots) VALUES (?, ?, 'etl_cli_dag', ?, -1, ?, 1, 'default_pool', 1)",
                (uuid.uuid4().hex, task_id, RUN_ID, state),
            )
        db.commit()
    finally:
        db.close()


def test_checkpoints_list_and_clear(src_db: Any, dst_db: Any, airflow_home: Path) -> None:
    _killed_transfer(src_db, dst_db)
    dst = dst_db.connect()
    checkpoints = _ident(dst_db, "transfer_checkpoints")
    committed = row_count(dst, dst_db.schema, "items")
    top = dst.execute(sql.SQL("SELECT max(id) FROM {}").format(_ident(dst_db, "items"))).fetchone()[0]  # type: ignore[index]
    fingerprint = dst.execute(sql.SQL("SELECT DISTINCT fingerprint FROM {}").format(checkpoints)).fetchone()[
        0
    ]  # type: ignore[index]
    # A second checkpoint, idle for an hour, whose task instance the metadata DB says is running.
    dst.execute(
        sql.SQL(
            "INSERT INTO {} (transfer_id, part, fingerprint, last_key, updated_at) "
            "VALUES (%s, 0, 'f', '7', now() - interval '1 hour')"
        ).format(checkpoints),
        (OTHER_ID,),
    )
    _set_task_state(airflow_home, "other_task", "running")
    env = {"AIRFLOW_CONN_ETL_WAREHOUSE": dst_db.uri()}  # the default --conn-id
    schema = ("--schema", dst_db.schema)
    clear = ("checkpoints", "clear", *schema)
    try:
        listed, recent, running, unconfirmed, unknown_ckpt, unknown_conn = etl_all(
            [
                (
                    *("checkpoints", "list", *schema, "--dag-id", "etl_cli_dag", "--task-id", "load_items"),
                    *("--run-id", RUN_ID, "--map-index=-1", "-o", "json"),
                ),
                (*clear, "--transfer-id", TRANSFER_ID, "--yes", "--idle-seconds", "3600"),
                (*clear, "--transfer-id", OTHER_ID, "--yes", "--idle-seconds", "0"),
                (*clear, "--transfer-id", TRANSFER_ID, "--idle-seconds", "0"),
                (*clear, "--dag-id", "no_such_dag", "--yes"),
                ("checkpoints", "list", "--conn-id", "no_such_conn", *schema),
            ],
            env,
        )
    finally:
        _set_task_state(airflow_home, None)
    assert listed.code == 0, listed.err
    ranges = listed.json()
    assert ranges and {r["transfer_id"] for r in ranges} == {TRANSFER_ID}  # the filters left OTHER_ID out
    assert sum(r["written"] for r in ranges) == committed  # what the destination holds, range by range
    assert max(int(r["last_key"]) for r in ranges if r["last_key"] is not None) == top
    assert {r["fingerprint"] for r in ranges} == {fingerprint}
    assert {r["resume_after"] for r in ranges if r["last_key"] is not None} == {str(top)}
    assert all(r["updated_at"] and r["finished_at"] is None and not r["done"] for r in ranges)

    assert recent.code != 0 and "committed a chunk" in recent.error_line(), recent.err
    assert TRANSFER_ID in recent.error_line()
    assert running.code != 0 and f"{OTHER_ID!r}: its task instance is running" in running.error_line()
    assert unconfirmed.code != 0 and "--yes" in unconfirmed.error_line(), unconfirmed.err
    assert unknown_ckpt.code != 0 and "no_such_dag" in unknown_ckpt.error_line(), unknown_ckpt.err
    assert unknown_conn.code != 0 and "'no_such_conn' is not defined" in unknown_conn.error_line()
    for r in (recent, running, unconfirmed, unknown_ckpt, unknown_conn):
        assert r.error_line().startswith("error: "), r.err
    assert row_count(dst, dst_db.schema, "transfer_checkpoints") == len(ranges) + 1  # nothing cleared yet

    cleared = etl(*clear, "--transfer-id", TRANSFER_ID, "--yes", "--idle-seconds", "0", env=env)
    assert cleared.code == 0, cleared.err
    assert f"{len(ranges)} range row(s)" in cleared.out
    left = dst.execute(sql.SQL("SELECT transfer_id FROM {}").format(checkpoints)).fetchall()
    assert left == [(OTHER_ID,)]


def _month(day: date, shift: int) -> date:
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def test_partitions_status_is_read_only(dst_db: Any) -> None:
    today = datetime.now(UTC).date()
    old, this, upcoming, missing = (_month(today, n) for n in (-24, 0, 1, 2))
    dst = dst_db.connect()
    events = _ident(dst_db, "events")
    dst.execute(sql.SQL("CREATE TABLE {} (ts date NOT NULL, v int) PARTITION BY RANGE (ts)").format(events))
    for lo in (old, this, upcoming):
        dst.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                _ident(dst_db, f"events_p{lo:%Y%m}"), events, sql.Literal(lo), sql.Literal(_month(lo, 1))
            )
        )
    dst.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(_ident(dst_db, "events_default"), events)
    )
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT d, 1 FROM unnest(%s::date[]) d").format(events),
        ([old, this, date(2099, 1, 5), date(2099, 2, 5), date(2099, 3, 5)],),
    )
    before = dst.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (dst_db.table("events"),)
    ).fetchone()
    env = {"AIRFLOW_CONN_WH": dst_db.uri()}
    status, unknown_table = etl_all(
        [
            (
                "partitions",
                "status",
                dst_db.table("events"),
                "-c",
                "wh",
                "--retention",
                "12 months",
                "-o",
                "json",
            ),
            ("partitions", "status", dst_db.table("no_such_table"), "-c", "wh"),
        ],
        env,
    )
    assert status.code == 0, status.err
    [report] = status.json()
    assert [p["from"] for p in report["partitions"]] == [str(old), str(this), str(upcoming)]
    assert report["interval"] == "month"  # read from the newest partition
    assert report["default"] == dst_db.table("events_default")
    assert report["default_rows"] == 3
    assert report["next_missing"] == {
        "partition": dst_db.table(f"events_p{missing:%Y%m}"),
        "from": str(missing),
        "to": str(_month(missing, 1)),
    }
    assert report["retention_would_detach"] == [dst_db.table(f"events_p{old:%Y%m}")]
    assert any("default partition" in w for w in report["retention_warnings"])  # the detach would block
    after = dst.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (dst_db.table("events"),)
    ).fetchone()
    assert after == before == (4,)  # a preview: nothing detached
    assert unknown_table.code != 0 and "no_such_table" in unknown_table.error_line(), unknown_table.err


def test_health_exit_code_by_level(dst_db: Any) -> None:
    env = {
        "AIRFLOW_CONN_ETL_WAREHOUSE": dst_db.uri(),
        "AIRFLOW_CONN_DOWN": "postgresql://postgres@127.0.0.1:1/postgres",
    }
    pg = ("--checks", "db_connections,avg_response_time")
    ok, warning, critical, down, unknown = etl_all(
        [
            ("health", *pg, "-o", "json"),
            ("health", *pg, "--threshold", "db_connections=0,100", "-o", "json"),
            ("health", *pg, "--threshold", "avg_response_time=0,0"),
            ("health", *pg, "--postgres-conn-id", "down", "--check-timeout", "3"),
            ("health", *pg, "--postgres-conn-id", "no_such_conn"),
        ],
        env,
    )
    [reading] = ok.json()
    levels = {r["metric"]: r for r in reading["readings"]}
    assert set(levels) == {"db_connections", "avg_response_time"}
    for r in levels.values():  # graded against the sensor's default thresholds
        expected = (
            "critical" if r["value"] >= r["critical"] else "warning" if r["value"] >= r["warning"] else "ok"
        )
        assert r["level"] == expected
    assert ok.code == {"ok": 0, "warning": 1, "critical": 2}[reading["level"]] == reading["exit_code"]
    assert 0 < levels["db_connections"]["value"] < 100  # our own connection counts
    assert (levels["db_connections"]["warning"], levels["db_connections"]["critical"]) == (80.0, 95.0)

    [warned] = warning.json()
    assert warning.code == 1 and warned["level"] == "warning", warning.out + warning.err
    assert {r["metric"]: r["level"] for r in warned["readings"]}["db_connections"] == "warning"
    assert critical.code == 2, critical.out + critical.err
    assert "avg_response_time" in critical.out and "critical" in critical.out
    assert down.code == 3 and "level: unavailable" in down.out, down.out + down.err
    assert "db_connections" in down.out
    assert unknown.code == 3 and "'no_such_conn' is not defined" in unknown.error_line(), unknown.err

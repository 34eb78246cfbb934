"""A worker killed with SIGKILL mid-transfer: the rerun resumes and the destination ends exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

from psycopg import sql

from tests.transfer_fixtures import row_count, start_transfer_process

ROWS, CHUNK = 60_000, 2_000


def _start(src_db: Any, dst_db: Any) -> subprocess.Popen[str]:
    spec = {
        "source_table": f"{src_db.schema}.items",
        "destination_table": f"{dst_db.schema}.items",
        "chunk_rows": CHUNK,
        "checkpoint_id": "crash-test",
        "checkpoint_schema": dst_db.schema,
    }
    return start_transfer_process(src_db.conninfo, dst_db.conninfo, spec)


def _committed_chunks(dst: Any, schema: str) -> int:
    found = dst.execute(
        sql.SQL("SELECT coalesce(sum(chunks), 0) FROM {} WHERE transfer_id = 'crash-test'").format(
            sql.Identifier(schema, "transfer_checkpoints")
        )
    ).fetchone()
    return int(found[0])


def test_sigkill_mid_transfer_then_rerun_is_exact(src_db: Any, dst_db: Any) -> None:
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text)").format(
                sql.Identifier(schema, "items")
            )
        )
    src.execute(
        sql.SQL("INSERT INTO {} SELECT g, repeat('x', 50) || g FROM generate_series(1, %s) g").format(
            sql.Identifier(src_db.schema, "items")
        ),
        (ROWS,),
    )
    # Slow each chunk down (100 ms per COPY statement) so the kill lands mid-transfer.
    dst.execute(
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.1); "
            "RETURN NULL; END $$"
        ).format(sql.Identifier(dst_db.schema, "slow"))
    )
    dst.execute(
        sql.SQL("CREATE TRIGGER slow AFTER INSERT ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            sql.Identifier(dst_db.schema, "items"), sql.Identifier(dst_db.schema, "slow")
        )
    )

    worker = _start(src_db, dst_db)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            if _committed_chunks(dst, dst_db.schema) >= 5:
                break
        except Exception:  # the checkpoint table may not exist yet
            pass
        time.sleep(0.02)
    assert worker.poll() is None, worker.communicate()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)

    committed = row_count(dst, dst_db.schema, "items")
    assert 0 < committed < ROWS and committed % CHUNK == 0  # only whole, committed chunks survive
    assert _committed_chunks(dst, dst_db.schema) * CHUNK == committed

    rerun = _start(src_db, dst_db)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rows_before_resume"] == committed
    assert summary["rows_read"] == ROWS - committed  # no committed chunk is read twice
    assert row_count(dst, dst_db.schema, "items") == ROWS
    same = dst.execute(
        sql.SQL("SELECT count(DISTINCT id), min(id), max(id) FROM {}").format(
            sql.Identifier(dst_db.schema, "items")
        )
    ).fetchone()
    assert same == (ROWS, 1, ROWS)

"""The per-run Transfer view's API and page: a real transfer recorded in a real ledger, read over HTTP.

The ledger rows come from the operator's own pieces (LedgerWriter for the attempt, ChunkRecorder as the
engine's chunk sink) around a real run of the engine between two PostgreSQL schemas.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import psycopg
import pytest

from benchmarks.datagen import create_empty_like_orders, create_orders
from etl_platform.dashboard.transfer import MAX_CHUNKS
from etl_platform.ledger.chunks import ChunkRecorder
from etl_platform.ledger.writer import LedgerWriter, TaskAttempt
from etl_platform.transfer import TransferSpec, run_transfer
from etl_platform.transfer.progress import recording_chunks
from harness import RedisDb
from test_dashboard_api import Tokens, _named, _refused, client_for, queries_of, settings_for

from test_dashboard_api import ledger, tokens  # isort: skip

__all__ = ["ledger", "tokens"]  # the fixtures, shared with tests/test_dashboard_api.py

DAG_ID, RUN_ID = "etl_orders", "manual__2026-12-04T09:00:00+00:00"
ROWS, CHUNK_ROWS = 3_000, 500
log = logging.getLogger("test.transfer_view")


def _attempt(task_id: str, try_number: int, map_index: int = -1) -> TaskAttempt:
    now = datetime.now(UTC)
    return TaskAttempt(DAG_ID, RUN_ID, now, task_id, map_index, try_number, now, "src.orders", "dst.orders")


def _record(ledger: str, src_db: Any, dst_db: Any, attempt: TaskAttempt, **spec: Any) -> dict[str, Any]:
    """One attempt as the operator records it: start row, chunk rows while it runs, final figures."""
    writer = LedgerWriter(lambda: psycopg.connect(ledger), log)
    writer.started(attempt)
    recorder = ChunkRecorder(lambda: psycopg.connect(ledger), attempt, log)
    with recorder, recording_chunks(recorder):
        summary = run_transfer(
            TransferSpec(
                source_table=f"{src_db.schema}.orders",
                destination_table=f"{dst_db.schema}.orders",
                checkpoint_schema=dst_db.schema,
                chunk_rows=CHUNK_ROWS,
                **spec,
            ),
            src_db.conninfo,
            dst_db.conninfo,
        ).as_dict()
    writer.finished(attempt, summary, None)
    return summary


@pytest.fixture
def recorded(ledger: str, src_db: Any, dst_db: Any) -> dict[str, Any]:
    """A run with two transfer tasks: `load` failed once (nothing moved), then succeeded over two
    streams; `load_copy` truncated the same rows in (a swap)."""
    create_orders(src_db.connect(), schema=src_db.schema, rows=ROWS, days=3)
    create_empty_like_orders(dst_db.connect(), "orders", schema=dst_db.schema)
    failed = _attempt("load", 1)
    writer = LedgerWriter(lambda: psycopg.connect(ledger), log)
    writer.started(failed)
    writer.finished(failed, None, "ChunkLoadError: <img src=x onerror=alert(1)> rejected")
    load = _record(ledger, src_db, dst_db, _attempt("load", 2), parallelism=2)
    copy = _record(ledger, src_db, dst_db, _attempt("load_copy", 1), write_mode="truncate")
    return {"load": load, "load_copy": copy}


def test_a_runs_attempts_come_with_their_chunks_in_order(
    tokens: Tokens, ledger: str, redis_db: RedisDb, recorded: dict[str, Any]
) -> None:
    with client_for(settings_for(ledger, redis_db.url), tokens.viewer) as client:
        resp = client.get("/api/transfer", params={"dag_id": DAG_ID, "run_id": RUN_ID})
        assert resp.status_code == 200, resp.text
        assert queries_of(resp) == 1  # attempts and chunks in one statement
        body = resp.json()
    assert (body["dag_id"], body["run_id"], body["max_chunks"]) == (DAG_ID, RUN_ID, MAX_CHUNKS)
    attempts = body["attempts"]
    assert [(a["task_id"], a["try_number"], a["status"]) for a in attempts] == [
        ("load", 1, "failed"),
        ("load", 2, "success"),
        ("load_copy", 1, "success"),
    ]
    failed, load, copy = attempts
    assert failed["chunks"] == [] and failed["error"].startswith("ChunkLoadError: <img")
    assert load["strategy"] == "append" and copy["strategy"] == recorded["load_copy"]["strategy"] == "swap"
    for attempt, summary in ((load, recorded["load"]), (copy, recorded["load_copy"])):
        chunks = attempt["chunks"]
        assert len(chunks) == summary["chunks"] == ROWS // CHUNK_ROWS and not attempt["truncated"]
        assert sum(c["rows"] for c in chunks) == attempt["rows"] == ROWS
        assert sum(c["bytes"] for c in chunks) == attempt["bytes"] == summary["bytes"]
        times = [datetime.fromisoformat(c["committed_at"]) for c in chunks]
        assert times == sorted(times)
        started, finished = (datetime.fromisoformat(attempt[k]) for k in ("started_at", "finished_at"))
        assert started <= times[0] and times[-1] <= finished
        for c in chunks:
            assert c["rss_mb"] > 0 and c["seconds"] >= 0
            assert c["rows_per_second"] == pytest.approx(c["rows"] / c["seconds"], rel=0.01)
        assert attempt["source"] == "src.orders" and attempt["rows_per_second"] > 0
    assert {c["stream"] for c in load["chunks"]} == {0, 1}  # parallelism=2: both streams committed


def test_filters_by_task_and_map_index_and_an_unknown_run_is_empty(
    tokens: Tokens, ledger: str, redis_db: RedisDb, recorded: dict[str, Any]
) -> None:
    with client_for(settings_for(ledger, redis_db.url), tokens.viewer) as client:

        def tries(**params: str) -> list[tuple[str, int]]:
            resp = client.get("/api/transfer", params={"dag_id": DAG_ID, "run_id": RUN_ID, **params})
            assert resp.status_code == 200, resp.text
            return [(a["task_id"], a["try_number"]) for a in resp.json()["attempts"]]

        assert tries(task_id="load") == [("load", 1), ("load", 2)]
        assert tries(task_id="load_copy", map_index="-1") == [("load_copy", 1)]
        # What the UI sends for a task that is not mapped: the placeholder left as is, or nothing.
        for placeholder in ("{MAP_INDEX}", "", "null"):
            assert tries(task_id="load", map_index=placeholder) == [("load", 1), ("load", 2)], placeholder
        assert tries(task_id="load", map_index="3") == []
        unknown = client.get("/api/transfer", params={"dag_id": DAG_ID, "run_id": "manual__nope"})
        assert unknown.status_code == 200 and unknown.json()["attempts"] == []


def test_chunks_are_capped_per_attempt(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    attempt = _attempt("big", 1)
    writer = LedgerWriter(lambda: psycopg.connect(ledger), log)
    writer.started(attempt)
    writer.finished(attempt, {"rows": MAX_CHUNKS + 1, "strategy": "append"}, None)
    start = datetime.now(UTC)
    with (
        psycopg.connect(ledger) as conn,
        conn.cursor() as cur,
        cur.copy(
            'COPY etl_audit.task_chunks (pipeline, run_id, task_id, seq, committed_at, "rows", bytes, seconds) '
            "FROM STDIN"
        ) as copy,
    ):
        for seq in range(1, MAX_CHUNKS + 2):
            copy.write_row((DAG_ID, RUN_ID, "big", seq, start + timedelta(seconds=seq), 1, 10, 0.5))
    with client_for(settings_for(ledger, redis_db.url), tokens.viewer) as client:
        resp = client.get("/api/transfer", params={"dag_id": DAG_ID, "run_id": RUN_ID, "task_id": "big"})
    [big] = resp.json()["attempts"]
    assert big["truncated"] and len(big["chunks"]) == MAX_CHUNKS
    assert big["chunks"][-1]["committed_at"] == (start + timedelta(seconds=MAX_CHUNKS)).isoformat()


def test_bad_parameters_are_400_naming_them(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    run = {"dag_id": DAG_ID, "run_id": RUN_ID}
    with client_for(settings_for(ledger, redis_db.url), tokens.admin) as client:
        assert _refused(client, "/api/transfer", {}) == ["dag_id", "run_id"]
        assert _refused(client, "/api/transfer", {"dag_id": DAG_ID}) == ["run_id"]
        for name in ("dag_id", "run_id", "task_id"):
            for char in ("\x00", "\t", "\x7f", "\x85"):
                assert _refused(client, "/api/transfer", {**run, name: f"a{char}b"}) == [name], (name, char)
            assert _refused(client, "/api/transfer", {**run, name: "x" * 251}) == [name]
        assert _refused(client, "/api/transfer", {**run, "dag_id": ""}) == ["dag_id"]
        for bad in ("-2", "2147483648", "99999999999999999999"):
            assert _refused(client, "/api/transfer", {**run, "map_index": bad}) == ["map_index"], bad
        assert _refused(client, "/api/transfer", [*run.items(), ("run_id", "x")]) == ["run_id"]
        resp = client.get("/api/transfer", params={**run, "pipeline": "x"})
        assert resp.status_code == 400 and _named(resp) == ["pipeline"]
        assert resp.json()["detail"] == (
            "pipeline: unknown parameter (this endpoint takes: dag_id, run_id, task_id, map_index)"
        )
        # Auth comes first: without a token the parameters are never looked at.
        assert client.get("/api/transfer", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_page_is_served_behind_the_same_auth(tokens: Tokens, ledger: str, redis_db: RedisDb) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with client_for(settings_for(ledger, redis_db.url)) as client:
        query = {"dag_id": DAG_ID, "run_id": RUN_ID}
        visit = client.get("/transfer", params=query, headers=html, follow_redirects=False)
        assert visit.status_code == 303, visit.text
        login, _, back = visit.headers["location"].partition("?")
        assert login.endswith("login") and parse_qs(back)["next"][0].startswith("http://testserver/transfer?")
        assert client.get("/static/transfer.js", headers=html).status_code == 401
        client.cookies.set("_token", tokens.viewer)
        page = client.get("/transfer", params={**query, "task_id": "load", "map_index": "{MAP_INDEX}"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'src="static/transfer.js"' in page.text
        assert client.get("/static/transfer.js").status_code == 200

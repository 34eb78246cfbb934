"""The chunk loop's plumbing: the PostgreSQL source's read-ahead thread, the one-round-trip chunk
commit, and the checkpoint table set-up, against real PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer import ChunkLoadError, TransferError, TransferSpec, run_transfer
from etl_platform.transfer.checkpoint import CheckpointStore, PartState
from etl_platform.transfer.sources import postgres as pg_source
from tests.transfer_fixtures import row_count


def _tables(src_db: Any, dst_db: Any, rows: int) -> tuple[Any, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text NOT NULL)").format(
                sql.Identifier(schema, "items")
            )
        )
    src.execute(
        sql.SQL("INSERT INTO {} SELECT g, repeat('x', 50) || g FROM generate_series(1, %s) g").format(
            sql.Identifier(src_db.schema, "items")
        ),
        (rows,),
    )
    return src, dst


def _run(src_db: Any, dst_db: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("source_table", f"{src_db.schema}.items")
    kwargs.setdefault("destination_table", f"{dst_db.schema}.items")
    kwargs.setdefault("checkpoint_schema", dst_db.schema)
    return run_transfer(TransferSpec(**kwargs), src_db.conninfo, dst_db.conninfo)


def _ids(conn: Any, schema: str) -> list[int]:
    rows = conn.execute(sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(schema, "items")))
    return [r[0] for r in rows.fetchall()]


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "etl-pg-read-ahead" and t.is_alive()]


@pytest.fixture
def small_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 KiB and a queue of 16 KiB: the thread waits on a full queue mid-chunk."""
    monkeypatch.setattr(pg_source, "BLOCK_SIZE", 4096)
    monkeypatch.setattr(pg_source, "READ_AHEAD_BYTES", 16384)
    monkeypatch.setattr(pg_source, "MIN_READ_AHEAD_BYTES", 16384)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_read_ahead_moves_every_row_once_and_leaves_no_thread(
    src_db: Any, dst_db: Any, small_read_ahead: None, parallelism: int
) -> None:
    _src, dst = _tables(src_db, dst_db, rows=5_000)
    summary = _run(src_db, dst_db, chunk_rows=700, parallelism=parallelism, checkpoint_id="ahead")
    assert summary.rows == 5_000
    assert _ids(dst, dst_db.schema) == list(range(1, 5_001))
    assert _read_ahead_threads() == []


def test_a_chunk_rejected_mid_stream_stops_the_read_ahead_and_the_rerun_resumes(
    src_db: Any, dst_db: Any, small_read_ahead: None
) -> None:
    """The destination fails while the source's COPY is still running (the thread waits on a full
    queue): the error is the chunk's, the source connection is cleaned up, nothing hangs."""
    _src, dst = _tables(src_db, dst_db, rows=6_000)
    dst.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT not_2500 CHECK (id <> 2500)").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )
    with pytest.raises(ChunkLoadError) as failure:
        _run(src_db, dst_db, chunk_rows=2_000, checkpoint_id="mid-stream")
    message = str(failure.value)
    assert "not_2500" in message and "id in (2000, " in message
    assert row_count(dst, dst_db.schema, "items") == 2_000  # the first chunk, committed
    assert _read_ahead_threads() == []
    dst.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT not_2500").format(sql.Identifier(dst_db.schema, "items"))
    )
    summary = _run(src_db, dst_db, chunk_rows=2_000, checkpoint_id="mid-stream")
    assert summary.resumed_from == "2000" and summary.rows_read == 4_000
    assert _ids(dst, dst_db.schema) == list(range(1, 6_001))


def test_a_source_error_mid_stream_is_raised_not_hung(
    src_db: Any, dst_db: Any, small_read_ahead: None
) -> None:
    _src, dst = _tables(src_db, dst_db, rows=3_000)
    with pytest.raises(TransferError, match="division by zero"):
        _run(
            src_db,
            dst_db,
            source_table=None,
            source_sql=(
                f"SELECT id, CASE WHEN id = 2100 THEN (1 / (id - 2100))::text ELSE v END AS v "
                f"FROM {src_db.schema}.items"
            ),
            key_column="id",
            chunk_rows=1_000,
            checkpoint_id="src-error",
        )
    assert row_count(dst, dst_db.schema, "items") == 2_000
    assert _read_ahead_threads() == []


def test_chunk_commit_takes_the_checkpoint_and_opens_the_next_transaction(dst_db: Any) -> None:
    conn = psycopg.connect(dst_db.conninfo)  # the engine's destination sessions: not autocommit
    store = CheckpointStore(dst_db.schema, "one-trip")
    store.ensure(conn)
    state = PartState(part=0, lo=None, hi=None)
    store.create(conn, "fp", [state])
    state.last_key, state.rows, state.written, state.chunks = "42", 42, 42, 1
    conn.execute("SELECT 1")  # the chunk's transaction
    store.advance_and_commit(conn, state, begin=True)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.rollback()  # the next chunk's (empty) transaction; the checkpoint is committed
    (loaded,) = store.load(conn, "fp") or []
    assert (loaded.last_key, loaded.rows, loaded.chunks, loaded.done) == ("42", 42, 1, False)

    state.done = True
    conn.execute("SELECT 1")
    store.advance_and_commit(conn, state, begin=False)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    (loaded,) = store.load(conn, "fp") or []
    assert loaded.done


def test_chunk_commit_raises_the_statements_own_error(dst_db: Any) -> None:
    conn = psycopg.connect(dst_db.conninfo)
    store = CheckpointStore(dst_db.schema, "deferred")
    store.ensure(conn)
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(dst_db.schema, "p")))
    conn.execute(
        sql.SQL("CREATE TABLE {} (p int REFERENCES {} DEFERRABLE INITIALLY DEFERRED)").format(
            sql.Identifier(dst_db.schema, "c"), sql.Identifier(dst_db.schema, "p")
        )
    )
    conn.commit()
    state = PartState(part=0, lo=None, hi=None)
    store.create(conn, "fp", [state])
    conn.execute(sql.SQL("INSERT INTO {} VALUES (7)").format(sql.Identifier(dst_db.schema, "c")))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # raised at COMMIT
        store.advance_and_commit(conn, state, begin=True)
    conn.rollback()


def test_ensure_adds_what_an_old_checkpoint_table_lacks(dst_db: Any) -> None:
    conn = dst_db.connect()
    table = sql.Identifier(dst_db.schema, "transfer_checkpoints")
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (transfer_id text NOT NULL, part integer NOT NULL, fingerprint text NOT NULL, "
            "lo text, hi text, last_key text, done boolean NOT NULL DEFAULT false, rows bigint NOT NULL "
            "DEFAULT 0, bytes bigint NOT NULL DEFAULT 0, chunks integer NOT NULL DEFAULT 0, updated_at "
            "timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (transfer_id, part))"
        ).format(table)
    )
    conn.commit()
    store = CheckpointStore(dst_db.schema, "old")
    store.ensure(conn)
    assert store._missing_columns(conn) == []
    conn.commit()
    store.ensure(conn)  # nothing missing: no DDL, no open transaction left
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

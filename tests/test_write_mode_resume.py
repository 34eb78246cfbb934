"""Every write mode survives a worker killed after k committed chunks: the rerun with the same
checkpoint resumes, reads at most one chunk again, and the destination ends exact.

The kill lands at a known point: a trigger on the checkpoint table makes each stream's (k+1)-th
checkpoint update wait for an advisory lock the test holds. That update runs in the chunk's own
transaction, after the chunk's rows are written, so every stream is caught with k chunks committed
and one written but not committed. Then the worker is SIGKILLed (as in test_transfer_crash.py) or
its destination backend is terminated, and the rerun runs with the gate open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer import TransferSpec, run_transfer
from etl_platform.transfer.checkpoint import CheckpointStore
from etl_platform.transfer.errors import StagingLostError
from tests.transfer_fixtures import start_transfer_process

CHUNK = 1_000
CHECKPOINT_ID = "write-mode-resume"
TABLE_DDL = (
    "CREATE TABLE {} (id bigint PRIMARY KEY, payload text NOT NULL, amount numeric(12,2), "
    "ts timestamptz NOT NULL)"
)
Row = tuple[Any, ...]

# truncate's strategies: the default and "staged" once TransferSpec has `strategy` (the default was
# the staged path before it). Only what the spec offers is parametrized; nothing is skipped.
TRUNCATE_STRATEGIES = [pytest.param("auto", id="swap"), pytest.param("staged", id="staged")]


# -- the crash harness ---------------------------------------------------------------------------


@dataclass
class Part:
    """A checkpoint row as the crash left it."""

    part: int
    lo: str | None
    hi: str | None
    last_key: str | None
    rows: int
    chunks: int
    done: bool


class CrashGate:
    """Stops every stream at its (k+1)-th chunk, uncommitted, so the test can kill the worker there.

    Also logs every committed checkpoint update (same transaction as the chunk) into
    `checkpoint_log`: the finished transfer deletes its checkpoint, the log keeps each part's count.
    """

    def __init__(self, dst_db: Any, after_chunks: int):
        self.schema = dst_db.schema
        self.after_chunks = after_chunks
        self.conn: psycopg.Connection[Any] = dst_db.connect()
        self.key = zlib.crc32(f"crash-gate:{self.schema}".encode()) & 0x7FFFFFFF
        self.checkpoints = sql.Identifier(self.schema, "transfer_checkpoints")
        self.log = sql.Identifier(self.schema, "checkpoint_log")
        CheckpointStore(self.schema, "setup").ensure(self.conn)  # the table the engine writes to
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (transfer_id text, part int, rows bigint, last_key text, done boolean)"
            ).format(self.log)
        )
        self.conn.execute(
            sql.SQL(
                """CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.chunks > {after} THEN
                    PERFORM pg_advisory_xact_lock({key});
                END IF;
                RETURN NEW;
            END $$"""
            ).format(
                fn=sql.Identifier(self.schema, "crash_gate"),
                after=sql.Literal(after_chunks),
                key=sql.Literal(self.key),
            )
        )
        self.conn.execute(
            sql.SQL(
                """CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {log} VALUES (NEW.transfer_id, NEW.part, NEW.rows, NEW.last_key, NEW.done);
                RETURN NULL;
            END $$"""
            ).format(fn=sql.Identifier(self.schema, "checkpoint_logger"), log=self.log)
        )
        self.conn.execute(
            sql.SQL(
                "CREATE TRIGGER crash_gate BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(self.checkpoints, sql.Identifier(self.schema, "crash_gate"))
        )
        self.conn.execute(
            sql.SQL(
                "CREATE TRIGGER checkpoint_logger AFTER UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(self.checkpoints, sql.Identifier(self.schema, "checkpoint_logger"))
        )
        self.conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))  # session-level: the gate is shut

    def waiting(self) -> list[int]:
        """Backends waiting at the gate (each holding one written, uncommitted chunk)."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 "
            "AND objid::bigint = %s AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (self.key,),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def wait_for(self, worker: subprocess.Popen[str], streams: int) -> list[int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = self.waiting()
            if len(pids) == streams:
                return pids
            if worker.poll() is not None:
                out, err = worker.communicate()
                pytest.fail(f"the transfer ended before {streams} stream(s) reached the gate:\n{out}\n{err}")
            time.sleep(0.02)
        worker.kill()
        pytest.fail(f"{streams} stream(s) never reached the gate; waiting: {self.waiting()}")

    def crash(self, worker: subprocess.Popen[str], streams: int, how: str) -> list[Part]:
        """Kills the transfer with every stream at the gate; returns the checkpoint it left."""
        pids = self.wait_for(worker, streams)
        if how == "sigkill":
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=30)
            assert worker.returncode == -signal.SIGKILL
            self._terminate(pids)  # its orphaned backends still wait at the gate: gone before it opens
        else:  # "backend_terminated": the worker sees its destination connection die
            self._terminate(pids)
            _out, err = worker.communicate(timeout=30)
            assert worker.returncode != 0
            assert "terminating connection due to administrator command" in err, err
        # Open the gate for the rerun (the killed backends held the checkpoint table).
        self.conn.execute(sql.SQL("DROP TRIGGER crash_gate ON {}").format(self.checkpoints))
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        return self.parts()

    def _terminate(self, pids: list[int]) -> None:
        for pid in pids:
            self.conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        left = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchall()
        assert left == [], left

    def parts(self) -> list[Part]:
        rows = self.conn.execute(
            sql.SQL(
                "SELECT part, lo, hi, last_key, rows, chunks, done FROM {} WHERE transfer_id = %s ORDER BY part"
            ).format(self.checkpoints),
            (CHECKPOINT_ID,),
        ).fetchall()
        return [Part(*r) for r in rows]

    def rows_read_per_part(self) -> dict[int, int]:
        """Each part's source rows over every attempt (the count its last committed update carried)."""
        rows = self.conn.execute(
            sql.SQL("SELECT part, max(rows) FROM {} WHERE transfer_id = %s GROUP BY part").format(self.log),
            (CHECKPOINT_ID,),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}


@pytest.fixture
def dbs(src_db: Any, dst_db: Any) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(sql.SQL(TABLE_DDL).format(sql.Identifier(schema, "items")))  # type: ignore[arg-type]
    yield src, dst
    src.close()
    dst.close()


@pytest.fixture
def crash_gate(dst_db: Any) -> Iterator[Callable[[int], CrashGate]]:
    """CrashGate(dst_db, after_chunks); closed after the test, which releases the lock whatever
    happened (a backend left waiting at the gate would otherwise hold up the schema's DROP)."""
    made: list[CrashGate] = []

    def make(after_chunks: int) -> CrashGate:
        made.append(CrashGate(dst_db, after_chunks))
        return made[-1]

    yield make
    for gate in made:
        gate.conn.close()


def _spec(src_db: Any, dst_db: Any, **options: Any) -> dict[str, Any]:
    return {
        "source_table": f"{src_db.schema}.items",
        "destination_table": f"{dst_db.schema}.items",
        "chunk_rows": CHUNK,
        "checkpoint_id": CHECKPOINT_ID,
        "checkpoint_schema": dst_db.schema,
        **options,
    }


def _crash(
    gate: CrashGate, src_db: Any, dst_db: Any, spec: dict[str, Any], *, streams: int = 1, how: str = "sigkill"
) -> list[Part]:
    """The first attempt, in a worker process killed with `gate.after_chunks` chunks committed per
    stream; returns the checkpoint it left."""
    worker = start_transfer_process(src_db.conninfo, dst_db.conninfo, spec)
    try:
        crashed = gate.crash(worker, streams, how)
    finally:
        if worker.poll() is None:  # a failed wait: never leave the worker behind
            worker.kill()
            worker.communicate(timeout=30)
    assert len(crashed) == streams
    k = gate.after_chunks
    for part in crashed:  # exactly k chunks committed per stream; the one in flight is gone
        assert (part.chunks, part.rows, part.done) == (k, k * CHUNK, False), part
    return crashed


def _rerun(src_db: Any, dst_db: Any, spec: dict[str, Any]) -> dict[str, Any]:
    return run_transfer(TransferSpec(**spec), src_db.conninfo, dst_db.conninfo).as_dict()


def _rows(conn: psycopg.Connection[Any], schema: str, table: str = "items") -> set[Row]:
    found = conn.execute(
        sql.SQL("SELECT id, payload, amount, ts FROM {}").format(sql.Identifier(schema, table))
    ).fetchall()
    rows = set(found)
    assert len(rows) == len(found)
    return rows


def _keys(conn: psycopg.Connection[Any], schema: str, where: str = "TRUE") -> list[int]:
    """The source's keys in key order (`where`: the test's own constant window predicate)."""
    found = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(
            sql.Identifier(schema, "items"),
            sql.SQL(where),  # type: ignore[arg-type]
        )
    ).fetchall()
    return [r[0] for r in found]


def _tables(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    found = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    return {r[0] for r in found.fetchall()}


def _assert_resumed(summary: dict[str, Any], crashed: Part, expected_key: int, remaining: int) -> None:
    assert summary["resumed_from"] == crashed.last_key == str(expected_key)
    assert summary["rows_before_resume"] == crashed.rows
    # The rerun reads what was left and at most the one chunk that was in flight again.
    assert remaining <= summary["rows_read"] <= remaining + CHUNK, (summary["rows_read"], remaining)


# -- upsert --------------------------------------------------------------------------------------

UPSERT_ROWS, UPSERT_AFTER = 30_000, 5


def _fill_upsert(
    src: psycopg.Connection[Any], dst: psycopg.Connection[Any], src_db: Any, dst_db: Any
) -> None:
    """Source: even keys 2..60000. Destination: every fourth source key with other values, odd keys
    between them and keys above the source's range (neither in the source)."""
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT 2 * g, 'new-' || g, g * 1.25, timestamptz '2026-01-01' + g * interval '1 minute' "
            "FROM generate_series(1, %s) g"
        ).format(sql.Identifier(src_db.schema, "items")),
        (UPSERT_ROWS,),
    )
    src.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(src_db.schema, "items")))
    dst.execute(
        sql.SQL(
            "INSERT INTO {t} SELECT 2 * g, 'old-' || g, -g, timestamptz '2025-06-01' FROM generate_series(4, %s, 4) g "
            "UNION ALL SELECT 2 * g + 1, 'dst-only-' || g, g, timestamptz '2025-06-02' FROM generate_series(0, %s, 5) g "
            "UNION ALL SELECT 100000 + g, 'dst-above-' || g, NULL, timestamptz '2025-06-03' FROM generate_series(1, 200) g"
        ).format(t=sql.Identifier(dst_db.schema, "items")),
        (UPSERT_ROWS, UPSERT_ROWS),
    )


def _upserted(before: set[Row], source: set[Row]) -> set[Row]:
    """The upsert of `source` into `before`, computed here: source rows win, other keys stay."""
    keys = {r[0] for r in source}
    return source | {r for r in before if r[0] not in keys}


def _in_range(rows: set[Row], lo: str | None, hi: str | None) -> set[Row]:
    return {r for r in rows if (lo is None or r[0] > int(lo)) and (hi is None or r[0] <= int(hi))}


@pytest.mark.parametrize("how", ["sigkill", "backend_terminated"])
def test_upsert_resumes_after_a_crash(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate], how: str
) -> None:
    src, dst = dbs
    _fill_upsert(src, dst, src_db, dst_db)
    before, source = _rows(dst, dst_db.schema), _rows(src, src_db.schema)
    keys = _keys(src, src_db.schema)
    spec = _spec(src_db, dst_db, write_mode="upsert")

    gate = crash_gate(UPSERT_AFTER)
    (crashed,) = _crash(gate, src_db, dst_db, spec, how=how)
    committed = UPSERT_AFTER * CHUNK
    # The committed chunks are upserted, the one in flight is not, nothing else was touched.
    assert crashed.last_key == str(keys[committed - 1])
    assert _rows(dst, dst_db.schema) == _upserted(before, _in_range(source, None, crashed.last_key))

    summary = _rerun(src_db, dst_db, spec)
    _assert_resumed(summary, crashed, keys[committed - 1], len(keys) - committed)
    final = _rows(dst, dst_db.schema)
    assert final == _upserted(before, source)
    assert gate.parts() == []  # the finished upsert forgets its checkpoint


def test_upsert_with_two_streams_resumes_each_range(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate]
) -> None:
    src, dst = dbs
    _fill_upsert(src, dst, src_db, dst_db)
    before, source = _rows(dst, dst_db.schema), _rows(src, src_db.schema)
    after = 3
    spec = _spec(src_db, dst_db, write_mode="upsert", parallelism=2)

    gate = crash_gate(after)
    crashed = _crash(gate, src_db, dst_db, spec, streams=2)
    lo_part, hi_part = crashed
    assert (lo_part.lo, lo_part.hi, hi_part.hi) == (None, hi_part.lo, None)  # two ranges, all keys
    committed: set[Row] = set()
    remaining: dict[int, int] = {}
    for part in crashed:
        in_range = _in_range(source, part.lo, part.hi)
        keys = sorted(r[0] for r in in_range)
        assert len(keys) > (after + 1) * CHUNK  # the crash was mid-range
        assert part.last_key == str(keys[after * CHUNK - 1])
        committed |= _in_range(in_range, None, part.last_key)
        remaining[part.part] = len(keys) - after * CHUNK
    assert _rows(dst, dst_db.schema) == _upserted(before, committed)

    summary = _rerun(src_db, dst_db, spec)
    assert summary["resumed_from"] == [p.last_key for p in crashed]
    assert summary["rows_before_resume"] == 2 * after * CHUNK
    # Per range: the rerun read what that range had left, and at most one chunk again.
    reread = {n: total - after * CHUNK for n, total in gate.rows_read_per_part().items()}
    for n, left in remaining.items():
        assert left <= reread[n] <= left + CHUNK, (n, reread[n], left)
    assert summary["rows_read"] == sum(reread.values())
    assert _rows(dst, dst_db.schema) == _upserted(before, source)


# -- delete_insert -------------------------------------------------------------------------------

DI_ROWS, DI_AFTER = 36_000, 5
WINDOW_START, WINDOW_END = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
WINDOW_SQL = "ts >= '2026-01-02T00:00:00+00:00' AND ts < '2026-01-03T00:00:00+00:00'"


def _in_window(row: Row) -> bool:
    return bool(WINDOW_START <= row[3] < WINDOW_END)


def test_delete_insert_resumes_and_publishes_nothing_half_way(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate]
) -> None:
    src, dst = dbs
    # Source: a third of the keys (id % 3 = 1) fall in the window [Jan 2, Jan 3), the rest around it.
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'new-' || g, g * 0.5, "
            "timestamptz '2026-01-01' + (g %% 3) * interval '1 day' + (g %% 1000) * interval '1 second' "
            "FROM generate_series(1, %s) g"
        ).format(sql.Identifier(src_db.schema, "items")),
        (DI_ROWS,),
    )
    src.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(src_db.schema, "items")))
    # Destination: old window rows for most of the source's window keys; window rows the source
    # lacks (keys the source has outside the window, keys above it); rows outside the window,
    # some sharing keys with source rows outside the window.
    dst.execute(
        sql.SQL(
            "INSERT INTO {t} "
            "SELECT g, 'old-' || g, -g, timestamptz '2026-01-02 12:00+00' FROM generate_series(1, 30000) g "
            "WHERE g % 3 = 1 "
            "UNION ALL SELECT g, 'stale-window-' || g, 0, timestamptz '2026-01-02 00:00+00' "
            "FROM generate_series(3, 36000, 21) g "
            "UNION ALL SELECT 40000 + g, 'stale-window-above-' || g, 0, timestamptz '2026-01-02 23:59:59+00' "
            "FROM generate_series(1, 300) g "
            "UNION ALL SELECT g, 'keep-' || g, g, timestamptz '2026-01-01 23:59:59.999999+00' "
            "FROM generate_series(2, 36000, 5) g WHERE g % 3 = 2 "
            "UNION ALL SELECT g, 'keep-after-' || g, g, timestamptz '2026-01-03' "
            "FROM generate_series(6, 36000, 35) g WHERE g % 3 = 0 "
            "UNION ALL SELECT 50000 + g, 'keep-above-' || g, NULL, timestamptz '2025-12-31' "
            "FROM generate_series(1, 100) g"
        ).format(t=sql.Identifier(dst_db.schema, "items"))
    )
    before = _rows(dst, dst_db.schema)
    outside = {r for r in before if not _in_window(r)}
    assert outside and len(outside) < len(before)
    window_rows = {r for r in _rows(src, src_db.schema) if _in_window(r)}
    keys = _keys(src, src_db.schema, WINDOW_SQL)
    assert len(keys) == len(window_rows) == DI_ROWS // 3
    spec = _spec(
        src_db,
        dst_db,
        write_mode="delete_insert",
        incremental_column="ts",
        window_start=WINDOW_START.isoformat(),
        window_end=WINDOW_END.isoformat(),
    )

    (crashed,) = _crash(crash_gate(DI_AFTER), src_db, dst_db, spec)
    committed = DI_AFTER * CHUNK
    assert crashed.last_key == str(keys[committed - 1])
    assert _rows(dst, dst_db.schema) == before  # the old window rows, nothing published half-way

    summary = _rerun(src_db, dst_db, spec)
    _assert_resumed(summary, crashed, keys[committed - 1], len(keys) - committed)
    final = _rows(dst, dst_db.schema)
    assert {r for r in final if not _in_window(r)} == outside  # untouched
    assert {r for r in final if _in_window(r)} == window_rows  # exactly the source's window
    assert final == outside | window_rows
    assert _tables(dst, dst_db.schema) == {"items", "transfer_checkpoints", "checkpoint_log"}  # stage gone


# -- truncate ------------------------------------------------------------------------------------

TRUNCATE_ROWS, TRUNCATE_AFTER = 30_000, 5


@pytest.mark.parametrize("strategy", TRUNCATE_STRATEGIES)
def test_truncate_resumes_and_keeps_the_old_rows_until_done(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate], strategy: str
) -> None:
    src, dst = dbs
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'new-' || g, g * 0.25, timestamptz '2026-02-01' + g * interval '1 second' "
            "FROM generate_series(1, %s) g"
        ).format(sql.Identifier(src_db.schema, "items")),
        (TRUNCATE_ROWS,),
    )
    src.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(src_db.schema, "items")))
    dst.execute(
        sql.SQL(
            "INSERT INTO {t} SELECT g, 'old-' || g, -g, timestamptz '2025-01-01' FROM generate_series(1, 9000, 3) g "
            "UNION ALL SELECT 40000 + g, 'old-above-' || g, NULL, timestamptz '2025-01-02' "
            "FROM generate_series(1, 100) g"
        ).format(t=sql.Identifier(dst_db.schema, "items"))
    )
    before, source = _rows(dst, dst_db.schema), _rows(src, src_db.schema)
    keys = _keys(src, src_db.schema)
    spec = _spec(src_db, dst_db, write_mode="truncate", strategy=strategy)

    (crashed,) = _crash(crash_gate(TRUNCATE_AFTER), src_db, dst_db, spec)
    committed = TRUNCATE_AFTER * CHUNK
    assert crashed.last_key == str(keys[committed - 1])
    assert _rows(dst, dst_db.schema) == before  # exactly the old rows while the load is unfinished

    summary = _rerun(src_db, dst_db, spec)
    _assert_resumed(summary, crashed, keys[committed - 1], len(keys) - committed)
    assert summary["strategy"] == ("staged" if strategy == "staged" else "swap"), summary["strategy_note"]
    assert _rows(dst, dst_db.schema) == source  # exactly the new rows
    # Whatever the attempts staged or built is gone: only the tables the test made are left.
    assert _tables(dst, dst_db.schema) == {"items", "transfer_checkpoints", "checkpoint_log"}


def _truncate_data(src_db: Any, dst_db: Any, src: Any, dst: Any) -> None:
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'new-' || g, g, timestamptz '2026-02-01' FROM generate_series(1, %s) g"
        ).format(sql.Identifier(src_db.schema, "items")),
        (TRUNCATE_ROWS,),
    )
    dst.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'old', 0, timestamptz '2025-01-01' FROM generate_series(1, 500) g"
        ).format(sql.Identifier(dst_db.schema, "items"))
    )


def test_a_view_created_between_crash_and_retry_makes_the_swap_replace_rows_in_place(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate]
) -> None:
    """The retry continues the swap's load; the swap sees the new view at its last step and puts
    the loaded rows in the old table instead, so the view keeps working and nothing is re-read."""
    src, dst = dbs
    _truncate_data(src_db, dst_db, src, dst)
    spec = _spec(src_db, dst_db, write_mode="truncate")
    (crashed,) = _crash(crash_gate(TRUNCATE_AFTER), src_db, dst_db, spec)
    view = sql.Identifier(dst_db.schema, "items_view")
    dst.execute(
        sql.SQL("CREATE VIEW {} AS SELECT id, payload FROM {}").format(
            view, sql.Identifier(dst_db.schema, "items")
        )
    )

    summary = _rerun(src_db, dst_db, spec)
    assert (
        summary["rows_before_resume"] == crashed.rows and summary["rows_read"] == TRUNCATE_ROWS - crashed.rows
    )
    assert summary["strategy"] == "staged" and "view" in summary["strategy_note"], summary["strategy_note"]
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)
    assert dst.execute(sql.SQL("SELECT count(*) FROM {}").format(view)).fetchone() == (TRUNCATE_ROWS,)
    assert _tables(dst, dst_db.schema) == {"items", "transfer_checkpoints", "checkpoint_log"}


def test_an_unlogged_destination_s_new_table_emptied_by_a_crash_is_never_swapped_in(
    src_db: Any, dst_db: Any, dbs: Any, crash_gate: Callable[[int], CrashGate]
) -> None:
    src, dst = dbs
    dst.execute(sql.SQL("ALTER TABLE {} SET UNLOGGED").format(sql.Identifier(dst_db.schema, "items")))
    _truncate_data(src_db, dst_db, src, dst)
    before = _rows(dst, dst_db.schema)
    spec = _spec(src_db, dst_db, write_mode="truncate")
    _crash(crash_gate(TRUNCATE_AFTER), src_db, dst_db, spec)
    (new,) = _tables(dst, dst_db.schema) - {"items", "transfer_checkpoints", "checkpoint_log"}
    assert new.startswith("swap_")
    # What crash recovery does to an UNLOGGED table while the (logged) checkpoints survive.
    dst.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(dst_db.schema, new)))

    with pytest.raises(StagingLostError, match="UNLOGGED"):
        _rerun(src_db, dst_db, spec)
    assert _rows(dst, dst_db.schema) == before  # nothing published
    summary = _rerun(src_db, dst_db, spec)  # starts over from the first key
    assert summary["resumed_from"] is None and summary["rows"] == TRUNCATE_ROWS
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


PARTITIONED_DDL = (
    "CREATE TABLE {t} (id bigint, payload text NOT NULL, amount numeric(12,2), ts timestamptz NOT NULL, "
    "PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts); "
    "CREATE TABLE {jan} PARTITION OF {t} FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00'); "
    "CREATE TABLE {feb} PARTITION OF {t} FOR VALUES FROM ('2026-02-01 00:00+00') TO ('2026-03-01 00:00+00'); "
    "CREATE TABLE {rest} PARTITION OF {t} DEFAULT"
)


@pytest.mark.parametrize(
    ("mode", "strategy"), [("truncate", "partition_swap"), ("delete_insert", "partition_exchange")]
)
def test_a_partition_exchange_resumes_and_keeps_the_old_partitions_until_done(
    src_db: Any, dst_db: Any, crash_gate: Callable[[int], CrashGate], mode: str, strategy: str
) -> None:
    src, dst = src_db.connect(), dst_db.connect()
    src.execute(sql.SQL(TABLE_DDL).format(sql.Identifier(src_db.schema, "items")))  # type: ignore[arg-type]
    dst.execute(
        sql.SQL(PARTITIONED_DDL).format(  # type: ignore[arg-type]
            t=sql.Identifier(dst_db.schema, "items"),
            jan=sql.Identifier(dst_db.schema, "items_jan"),
            feb=sql.Identifier(dst_db.schema, "items_feb"),
            rest=sql.Identifier(dst_db.schema, "items_rest"),
        )
    )
    # Source rows every 2 minutes through January and February; old rows hourly, and in March.
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'new-' || g, g, timestamptz '2026-01-01 00:00+00' + g * interval '2 minutes' "
            "FROM generate_series(0, 42000) g WHERE timestamptz '2026-01-01 00:00+00' + g * interval '2 minutes' "
            "< '2026-03-01 00:00+00'"
        ).format(sql.Identifier(src_db.schema, "items"))
    )
    dst.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'old', 0, timestamptz '2026-01-01 00:00+00' + g * interval '1 hour' "
            "FROM generate_series(0, 2000) g"
        ).format(sql.Identifier(dst_db.schema, "items"))
    )
    window = {
        "incremental_column": "ts",
        "window_start": "2026-01-01T00:00:00+00:00",
        "window_end": "2026-03-01T00:00:00+00:00",
    }
    spec = _spec(src_db, dst_db, write_mode=mode, **(window if mode == "delete_insert" else {}))
    before = _rows(dst, dst_db.schema)

    (crashed,) = _crash(crash_gate(TRUNCATE_AFTER), src_db, dst_db, spec)
    assert _rows(dst, dst_db.schema) == before  # the old partitions until the exchange

    summary = _rerun(src_db, dst_db, spec)
    keys = _keys(src, src_db.schema)
    committed = TRUNCATE_AFTER * CHUNK
    _assert_resumed(summary, crashed, keys[committed - 1], len(keys) - committed)
    assert summary["strategy"] == strategy, summary["strategy_note"]
    source = _rows(src, src_db.schema)
    kept = {r for r in before if r[3].isoformat() >= "2026-03-01"} if mode == "delete_insert" else set()
    assert _rows(dst, dst_db.schema) == source | kept
    assert _tables(dst, dst_db.schema) == {
        "items",
        "items_jan",
        "items_feb",
        "items_rest",
        "transfer_checkpoints",
        "checkpoint_log",
    }

"""Partitioned destinations: truncate exchanges every partition, delete_insert the ones its window covers."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import psycopg
import pytest

from etl_platform.transfer.engine import run_transfer
from etl_platform.transfer.spec import TransferSpec

MONTHS = ("2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01")


def _run(src_db: Any, dst_db: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("source_table", f"{src_db.schema}.events")
    kwargs.setdefault("destination_table", f"{dst_db.schema}.events")
    kwargs.setdefault("checkpoint_schema", dst_db.schema)
    kwargs.setdefault("chunk_rows", 700)
    return run_transfer(TransferSpec(**kwargs), src_db.conninfo, dst_db.conninfo)


def _source(src_db: Any) -> psycopg.Connection[Any]:
    """Events every 30 minutes from January to May 2026, and a few outside that (the default's)."""
    src = src_db.connect()
    src.execute("CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, what text)")
    src.execute(
        "INSERT INTO events SELECT g, timestamptz '2026-01-01 00:00+00' + g * interval '30 minutes', 'new ' || g "
        "FROM generate_series(0, 5000) g"
    )
    src.execute("INSERT INTO events VALUES (-1, '2030-01-01 00:00+00', 'far future')")
    return src


def _destination(dst_db: Any) -> psycopg.Connection[Any]:
    dst = dst_db.connect()
    dst.execute(
        "CREATE TABLE events (id bigint, at timestamptz NOT NULL, what text, PRIMARY KEY (id, at)) "
        "PARTITION BY RANGE (at)"
    )
    for lo, hi in itertools.pairwise(MONTHS):
        name = "events_" + lo[:7].replace("-", "_")
        dst.execute(
            f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ('{lo} 00:00+00') TO ('{hi} 00:00+00')"
        )
    dst.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    dst.execute("CREATE INDEX events_what ON events (what)")
    dst.execute("CREATE VIEW recent_events AS SELECT id, what FROM events WHERE at >= '2026-03-01'")
    dst.execute("COMMENT ON TABLE events_2026_02 IS 'february'")
    dst.execute(
        "INSERT INTO events SELECT g, timestamptz '2026-01-01 00:00+00' + g * interval '1 hour', 'old' "
        "FROM generate_series(0, 2000) g"
    )
    dst.execute("INSERT INTO events VALUES (-5, '2031-06-01 00:00+00', 'old far future')")
    return dst


def _partitions(dst: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return dst.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), obj_description(c.oid, 'pg_class'), "
        "(SELECT array_agg(ic.relname ORDER BY ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        " JOIN pg_inherits ih ON ih.inhrelid = i.indexrelid WHERE i.indrelid = c.oid) "
        "FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = 'events'::regclass ORDER BY 1"
    ).fetchall()


def _rows(conn: psycopg.Connection[Any], where: str = "TRUE") -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT id, at, what FROM events WHERE {where} ORDER BY id, at").fetchall()


def test_truncate_exchanges_every_partition_and_keeps_the_parent(src_db: Any, dst_db: Any) -> None:
    src, dst = _source(src_db), _destination(dst_db)
    before = _partitions(dst)
    parent = dst.execute("SELECT 'events'::regclass::oid, 'recent_events'::regclass::oid").fetchone()
    old_partitions = dst.execute("SELECT 'events_2026_02'::regclass::oid").fetchone()
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        with dst_db.connect() as reader:
            while not stop.is_set():
                row = reader.execute("SELECT count(*) FROM events").fetchone()
                seen.add(row[0] if row else -1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        summary = _run(src_db, dst_db, write_mode="truncate")
    finally:
        stop.set()
        watcher.join()

    assert summary.strategy == "partition_swap", summary.strategy_note
    assert "events_2026_01" in summary.strategy_note and "events_default" in summary.strategy_note
    assert _rows(dst) == _rows(src)
    assert seen <= {2_002, 5_002}, seen  # the old rows or the new, never empty or half
    assert _partitions(dst) == before  # same names, bounds, comments, attached indexes
    assert dst.execute("SELECT 'events'::regclass::oid, 'recent_events'::regclass::oid").fetchone() == parent
    assert dst.execute("SELECT 'events_2026_02'::regclass::oid").fetchone() != old_partitions
    assert dst.execute("SELECT count(*) FROM events_default").fetchone() == (1,)
    assert dst.execute("SELECT count(*) FROM recent_events").fetchone() == (
        sum(1 for r in _rows(src) if r[1].isoformat() >= "2026-03-01"),
    )
    with pytest.raises(psycopg.errors.UniqueViolation):  # the partitioned primary key holds
        dst.execute("INSERT INTO events VALUES (1, '2026-01-01 00:30+00', 'twin')")
    leftovers = dst.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relname ~ '^(swap|stage)_'",
        (dst_db.schema,),
    ).fetchall()
    assert (
        leftovers == []
        and dst.execute("SELECT conname FROM pg_constraint WHERE conname = 'etl_partition_bound'").fetchall()
        == []
    )


WINDOW = {
    "incremental_column": "at",
    "window_start": "2026-02-01T00:00:00+00:00",
    "window_end": "2026-04-01T00:00:00+00:00",
}
INSIDE = "at >= '2026-02-01 00:00+00' AND at < '2026-04-01 00:00+00'"


def test_delete_insert_of_whole_partitions_exchanges_them(src_db: Any, dst_db: Any) -> None:
    src, dst = _source(src_db), _destination(dst_db)
    outside = _rows(dst, f"NOT ({INSIDE})")
    untouched = dst.execute(
        "SELECT 'events_2026_01'::regclass::oid, 'events_2026_04'::regclass::oid"
    ).fetchone()
    summary = _run(src_db, dst_db, write_mode="delete_insert", **WINDOW)
    assert summary.strategy == "partition_exchange", summary.strategy_note
    assert "events_2026_02, events_2026_03" in summary.strategy_note
    assert _rows(dst, f"NOT ({INSIDE})") == outside
    assert _rows(dst, INSIDE) == _rows(src, INSIDE)
    assert (
        dst.execute("SELECT 'events_2026_01'::regclass::oid, 'events_2026_04'::regclass::oid").fetchone()
        == untouched
    )  # partitions outside the window are never touched
    assert dst.execute("SELECT obj_description('events_2026_02'::regclass, 'pg_class')").fetchone() == (
        "february",
    )


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        (
            {"window_start": "2026-02-01T00:00:00+00:00", "window_end": "2026-03-15T00:00:00+00:00"},
            "only in part",
        ),
        ({"window_start": "2025-12-01T00:00:00+00:00", "window_end": "2026-03-01T00:00:00+00:00"}, "edges"),
    ],
)
def test_a_window_not_on_partition_bounds_is_staged_and_says_why(
    src_db: Any, dst_db: Any, window: dict[str, str], reason: str
) -> None:
    src, dst = _source(src_db), _destination(dst_db)
    inside = f"at >= '{window['window_start']}' AND at < '{window['window_end']}'"
    outside = _rows(dst, f"NOT ({inside})")
    summary = _run(src_db, dst_db, write_mode="delete_insert", incremental_column="at", **window)
    assert summary.strategy == "staged" and reason in summary.strategy_note, summary.strategy_note
    assert _rows(dst, f"NOT ({inside})") == outside
    assert _rows(dst, inside) == _rows(src, inside)


def test_a_trigger_on_one_partition_sends_the_refresh_the_staged_way(src_db: Any, dst_db: Any) -> None:
    src, dst = _source(src_db), _destination(dst_db)
    dst.execute("CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
    dst.execute("CREATE TRIGGER keep BEFORE INSERT ON events_2026_03 FOR EACH ROW EXECUTE FUNCTION keep()")
    summary = _run(src_db, dst_db, write_mode="truncate")
    assert summary.strategy == "staged"
    assert "partition" in summary.strategy_note and "events_2026_03" in summary.strategy_note
    assert "triggers keep" in summary.strategy_note
    assert _rows(dst) == _rows(src)

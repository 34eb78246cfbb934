"""The transfer engine against real PostgreSQL: exactness, write modes, windows, resume, bad input."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer import (
    ChunkLoadError,
    StagingLostError,
    TransferConfigError,
    TransferError,
    TransferSpec,
    run_transfer,
)
from etl_platform.transfer.checkpoint import CheckpointStore
from tests.transfer_fixtures import (
    ARROW_UNREPRESENTABLE,
    AWKWARD_COLUMNS,
    create_awkward_destination,
    create_awkward_source,
    hostile_rows,
    row_count,
    table_digest,
)


def _run(src_db: Any, dst_db: Any, *, reset_checkpoint: bool = False, **kwargs: Any) -> Any:
    kwargs.setdefault("source_table", f"{src_db.schema}.items")
    kwargs.setdefault("destination_table", f"{dst_db.schema}.items")
    kwargs.setdefault("checkpoint_schema", dst_db.schema)  # tests share the destination database
    return run_transfer(
        TransferSpec(**kwargs), src_db.conninfo, dst_db.conninfo, reset_checkpoint=reset_checkpoint
    )


@pytest.fixture
def awkward(src_db: Any, dst_db: Any) -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    src, dst = src_db.connect(), dst_db.connect()
    create_awkward_source(src, src_db.schema, "items", rows=2_345)
    return src, dst


@pytest.fixture
def awkward_arrow(src_db: Any, dst_db: Any) -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    """The awkward table without what Arrow's timestamp/date types cannot hold (the transform path)."""
    src, dst = src_db.connect(), dst_db.connect()
    create_awkward_source(src, src_db.schema, "items", rows=2_345, arrow_safe=True)
    return src, dst


@pytest.mark.parametrize(
    ("mixed_type", "expected_format", "parallelism"),
    [("integer", "binary", 1), ("bigint", "text", 1), ("integer", "binary", 3)],
)
def test_round_trip_is_exact(
    src_db: Any, dst_db: Any, awkward: Any, mixed_type: str, expected_format: str, parallelism: int
) -> None:
    src, dst = awkward
    create_awkward_destination(dst, dst_db.schema, "items", mixed_type=mixed_type)
    summary = _run(src_db, dst_db, chunk_rows=500, parallelism=parallelism)
    assert summary.copy_format == expected_format
    assert summary.rows == 2_345
    assert summary.chunks >= 5
    assert table_digest(dst, dst_db.schema, "items", AWKWARD_COLUMNS) == table_digest(
        src, src_db.schema, "items", AWKWARD_COLUMNS
    )
    assert_hostile_values_survive(src, src_db.schema, dst, dst_db.schema)


def assert_hostile_values_survive(
    src: Any, src_schema: str, dst: Any, dst_schema: str, *, absent: tuple[str, ...] = ()
) -> None:
    """Every hostile value the fixture plants (but `absent`) is in the source, and each row carrying
    one arrived with every column's text form unchanged (NaN, infinities, BC, -0, json: exactly)."""
    expected = hostile_rows(src, src_schema, "items")
    missing = [name for name, rows in expected.items() if not rows and name not in absent]
    assert not missing, f"the fixture no longer plants {missing}"
    got = hostile_rows(dst, dst_schema, "items")
    for name, rows in expected.items():
        assert got[name] == rows, name


def test_identity_transform_round_trips_through_arrow(src_db: Any, dst_db: Any, awkward_arrow: Any) -> None:
    src, dst = awkward_arrow
    create_awkward_destination(dst, dst_db.schema, "items")
    for fmt, fn in (("pandas", lambda df: df), ("arrow", lambda table: table)):
        dst.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(dst_db.schema, "items")))
        summary = _run(src_db, dst_db, chunk_rows=700, transform=fn, transform_format=fmt)
        assert summary.copy_format == "csv"
        assert table_digest(dst, dst_db.schema, "items", AWKWARD_COLUMNS) == table_digest(
            src, src_db.schema, "items", AWKWARD_COLUMNS
        ), fmt
        assert_hostile_values_survive(src, src_db.schema, dst, dst_db.schema, absent=ARROW_UNREPRESENTABLE)


def test_a_transform_refuses_a_timestamp_arrow_cannot_hold_and_loads_nothing(
    src_db: Any, dst_db: Any, awkward: Any
) -> None:
    """The transform path's limit, stated: an infinite or BC timestamp (or date) fails the transfer naming
    the value and the Arrow type, before any row reaches the destination.

    The awkward table has both in its timestamptz and its date column, and Arrow's CSV reader converts
    columns on several threads: whichever column fails first is the one named, so either is right."""
    _, dst = awkward
    create_awkward_destination(dst, dst_db.schema, "items")
    arrow_type = r"(timestamp\[us, tz=UTC\]|date32\[day\])"
    with pytest.raises(TransferError, match=rf"{arrow_type}: invalid value '(-?infinity|.* BC)'"):
        _run(src_db, dst_db, chunk_rows=700, transform=lambda df: df)
    assert row_count(dst, dst_db.schema, "items") == 0


def test_transform_adds_and_drops(src_db: Any, dst_db: Any, awkward_arrow: Any) -> None:
    src, dst = awkward_arrow
    create_awkward_destination(dst, dst_db.schema, "items")
    dst.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN processed_at timestamptz").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )

    def clean(df: pd.DataFrame) -> pd.DataFrame:
        return df.dropna(subset=["ts"]).assign(processed_at=pd.Timestamp("2026-05-01T00:00:00Z"))

    summary = _run(src_db, dst_db, chunk_rows=1_000, transform=clean)
    expected = src.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE ts IS NOT NULL").format(sql.Identifier(src_db.schema, "items"))
    ).fetchone()
    assert summary.rows_read == 2_345
    assert expected is not None and summary.rows == expected[0]
    got = dst.execute(
        sql.SQL("SELECT count(*), min(processed_at), count(ts) FROM {}").format(
            sql.Identifier(dst_db.schema, "items")
        )
    ).fetchone()
    assert got is not None
    assert got[0] == expected[0] == got[2]
    assert got[1].isoformat() == "2026-05-01T00:00:00+00:00"


def test_transform_output_must_fit_destination(src_db: Any, dst_db: Any, awkward_arrow: Any) -> None:
    _, dst = awkward_arrow
    create_awkward_destination(dst, dst_db.schema, "items")
    with pytest.raises(TransferConfigError, match=r"\['bogus'\].*items"):
        _run(src_db, dst_db, transform=lambda df: df.assign(bogus=1))
    assert row_count(dst, dst_db.schema, "items") == 0


def test_arrow_transform_must_return_a_table(src_db: Any, dst_db: Any, awkward_arrow: Any) -> None:
    _, dst = awkward_arrow
    create_awkward_destination(dst, dst_db.schema, "items")
    with pytest.raises(
        TransferError, match=r"an arrow transform must return a pyarrow\.Table, got DataFrame"
    ):
        _run(src_db, dst_db, transform=lambda t: t.to_pandas(), transform_format="arrow")
    assert row_count(dst, dst_db.schema, "items") == 0
    # A transform returning a Table is taken as is: the first ten rows of the (only) chunk.
    summary = _run(src_db, dst_db, transform=lambda t: t.slice(0, 10), transform_format="arrow")
    assert summary.rows == 10 and summary.rows_read == 2_345
    ids = dst.execute(
        sql.SQL("SELECT array_agg(id ORDER BY id) FROM {}").format(sql.Identifier(dst_db.schema, "items"))
    )
    assert ids.fetchone() == (list(range(1, 11)),)


# -- write modes ---------------------------------------------------------------------------------


def _simple_tables(src_db: Any, dst_db: Any, rows: int = 1_000) -> tuple[Any, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text, ts timestamptz NOT NULL)").format(
                sql.Identifier(schema, "items")
            )
        )
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'v' || g, timestamptz '2026-01-01' + g * interval '1 hour' "
            "FROM generate_series(1, %s) g"
        ).format(sql.Identifier(src_db.schema, "items")),
        (rows,),
    )
    src.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(src_db.schema, "items")))
    return src, dst


def _rows(conn: Any, schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT id, v FROM {} ORDER BY id").format(sql.Identifier(schema, "items"))
    ).fetchall()


def test_append(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db)
    summary = _run(src_db, dst_db, chunk_rows=300)
    assert (summary.rows, summary.chunks) == (1_000, 4)
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


def test_append_rerun_with_same_checkpoint_adds_only_new_rows(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db)
    _run(src_db, dst_db, chunk_rows=300, checkpoint_id="daily-1")
    src.execute(
        sql.SQL("INSERT INTO {} VALUES (1001, 'late', now())").format(sql.Identifier(src_db.schema, "items"))
    )
    again = _run(src_db, dst_db, chunk_rows=300, checkpoint_id="daily-1")
    assert again.rows == 1 and again.resumed_from == "1000"
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


def test_truncate_ends_with_exactly_the_source_and_readers_never_see_it_empty(
    src_db: Any, dst_db: Any
) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=20_000)
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'stale', now() FROM generate_series(1, 50000) g").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        with dst_db.connect() as reader:
            while not stop.is_set():
                seen.add(row_count(reader, dst_db.schema, "items"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _run(src_db, dst_db, chunk_rows=1_000, write_mode="truncate")
    finally:
        stop.set()
        watcher.join()
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)
    assert seen <= {50_000, 20_000}, seen
    leftovers = dst.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename ~ '^(stage|swap)_'",
        (dst_db.schema,),
    ).fetchone()
    assert leftovers == (0,)


def test_upsert_updates_and_inserts(src_db: Any, dst_db: Any) -> None:
    _src, dst = _simple_tables(src_db, dst_db)
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'old', now() FROM generate_series(500, 1500) g").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )
    summary = _run(src_db, dst_db, chunk_rows=250, write_mode="upsert")
    assert summary.rows == 1_000
    got = dict(_rows(dst, dst_db.schema))
    assert len(got) == 1_500
    assert all(got[i] == f"v{i}" for i in range(1, 1_001))
    assert all(got[i] == "old" for i in range(1_001, 1_501))
    # A second run changes nothing: upsert is idempotent.
    _run(src_db, dst_db, chunk_rows=250, write_mode="upsert")
    assert dict(_rows(dst, dst_db.schema)) == got


def _identity_destination(dst: Any, schema: str, *existing: tuple[int, str]) -> None:
    """Destination whose copied key is GENERATED ALWAYS AS IDENTITY (and v uniquely indexed)."""
    items = sql.Identifier(schema, "items")
    dst.execute(sql.SQL("DROP TABLE {}").format(items))
    dst.execute(
        sql.SQL(
            "CREATE TABLE {} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text UNIQUE, "
            "ts timestamptz NOT NULL)"
        ).format(items)
    )
    for key, value in existing:
        dst.execute(
            sql.SQL("INSERT INTO {} OVERRIDING SYSTEM VALUE VALUES (%s, %s, now())").format(items),
            (key, value),
        )


@pytest.mark.parametrize("mode", ["append", "truncate", "upsert"])
def test_identity_always_destination_takes_the_source_keys(src_db: Any, dst_db: Any, mode: str) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=1_000)
    existing = [] if mode == "append" else [(2, "old"), (1_002, "gone")]
    _identity_destination(dst, dst_db.schema, *existing)
    summary = _run(src_db, dst_db, chunk_rows=300, write_mode=mode)
    assert summary.rows == 1_000
    expected = _rows(src, src_db.schema)
    if mode == "upsert":  # 2 is overwritten, 1002 is not in the source and stays
        expected.append((1_002, "gone"))
    assert _rows(dst, dst_db.schema) == expected


def test_upsert_on_other_columns_keeps_the_identity_of_existing_rows(src_db: Any, dst_db: Any) -> None:
    _src, dst = _simple_tables(src_db, dst_db, rows=200)
    _identity_destination(dst, dst_db.schema, (1_001, "v5"), (1_002, "gone"))
    _run(src_db, dst_db, chunk_rows=64, write_mode="upsert", conflict_columns=("v",))
    expected = sorted([(i, f"v{i}") for i in range(1, 201) if i != 5] + [(1_001, "v5"), (1_002, "gone")])
    assert _rows(dst, dst_db.schema) == expected  # 'v5' was updated in place: it kept id 1001


def test_upsert_on_conflict_columns(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=300)
    items = sql.Identifier(dst_db.schema, "items")
    dst.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT v_unique UNIQUE (v)").format(items))
    dst.execute(sql.SQL("INSERT INTO {} VALUES (-7, 'v7', now()), (-1, 'keep', now())").format(items))
    summary = _run(src_db, dst_db, chunk_rows=100, write_mode="upsert", conflict_columns=("v",))
    assert summary.rows == 300
    # 'v7' matched on v: updated in place, so its id became 7; 'keep' is not in the source.
    assert _rows(dst, dst_db.schema) == [(-1, "keep"), *_rows(src, src_db.schema)]


@pytest.mark.parametrize(
    ("ddl", "conflict", "pattern"),
    [
        (None, ("v",), r"upsert' on .*\.items needs a unique index .* \['v'\].*its unique keys: \(id\)"),
        ("CREATE UNIQUE INDEX ON {} (v, ts)", ("v",), r"\['v'\].*its unique keys: \(id\); \(v, ts\)"),
        ("CREATE UNIQUE INDEX ON {} (v) WHERE id > 0", ("v",), r"\['v'\] \(not partial"),
        (
            "ALTER TABLE {} ADD COLUMN code text UNIQUE",
            ("code",),
            r"conflict columns \['code'\] of .*\.items are not among the copied columns \(id, v, ts\)",
        ),
    ],
)
def test_upsert_without_a_matching_unique_key_is_refused(
    src_db: Any, dst_db: Any, ddl: str | None, conflict: tuple[str, ...], pattern: str
) -> None:
    _src, dst = _simple_tables(src_db, dst_db, rows=300)
    if ddl:
        dst.execute(sql.SQL(ddl).format(sql.Identifier(dst_db.schema, "items")))  # type: ignore[arg-type]
    with pytest.raises(TransferConfigError, match=pattern):
        _run(src_db, dst_db, write_mode="upsert", conflict_columns=conflict)
    assert row_count(dst, dst_db.schema, "items") == 0


def test_delete_insert_replaces_only_the_window(src_db: Any, dst_db: Any) -> None:
    _src, dst = _simple_tables(src_db, dst_db, rows=24 * 10)  # ten days, hourly
    dst.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'old', timestamptz '2026-01-01' + g * interval '1 hour' "
            "FROM generate_series(1, 240) g WHERE g % 2 = 0"
        ).format(sql.Identifier(dst_db.schema, "items"))
    )
    window = {"window_start": "2026-01-03T00:00:00+00:00", "window_end": "2026-01-05T00:00:00+00:00"}
    opts = {"write_mode": "delete_insert", "incremental_column": "ts", "chunk_rows": 10, **window}
    unindexed = _run(src_db, dst_db, **opts)
    assert (
        unindexed.strategy == "staged"
        and "the window's DELETE reads the whole table" in unindexed.strategy_note
    )
    dst.execute(sql.SQL("CREATE INDEX ON {} (ts)").format(sql.Identifier(dst_db.schema, "items")))
    replay = _run(src_db, dst_db, **opts)  # a replay is harmless
    assert (replay.strategy, replay.strategy_note) == ("staged", None)
    got = dict(_rows(dst, dst_db.schema))
    in_window = set(range(48, 96))  # hours 48..95 fall in [Jan 3, Jan 5)
    assert all(got[i] == f"v{i}" for i in in_window)
    assert all(v == "old" for i, v in got.items() if i not in in_window)
    assert len([i for i in got if i not in in_window]) == 120 - 24


def test_incremental_window_moves_only_that_window(src_db: Any, dst_db: Any) -> None:
    _src, dst = _simple_tables(src_db, dst_db, rows=24 * 5)
    summary = _run(
        src_db,
        dst_db,
        incremental_column="ts",
        window_start="2026-01-02",
        window_end="2026-01-03",
        chunk_rows=7,
    )
    ids = [r[0] for r in _rows(dst, dst_db.schema)]
    assert ids == list(range(24, 48))
    assert summary.rows == 24


def test_source_sql_with_key_column(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db)
    query = (
        sql.SQL("SELECT id, upper(v) AS v, ts FROM {} WHERE v LIKE 'v1%'")
        .format(sql.Identifier(src_db.schema, "items"))
        .as_string(src)
    )
    summary = run_transfer(
        TransferSpec(
            source_sql=query,
            key_column="id",
            destination_table=f"{dst_db.schema}.items",
            chunk_rows=50,
            checkpoint_schema=dst_db.schema,
            parallelism=2,
        ),
        src_db.conninfo,
        dst_db.conninfo,
    )
    expected = [r for r in _rows(src, src_db.schema) if r[1].startswith("v1")]
    assert summary.rows == len(expected)
    assert _rows(dst, dst_db.schema) == [(i, v.upper()) for i, v in expected]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_source_sql_percent_signs_reach_the_server_unchanged(
    src_db: Any, dst_db: Any, parallelism: int
) -> None:
    """A '%' inside a string literal and the modulo operator: nothing may double them."""
    src, dst = _simple_tables(src_db, dst_db, rows=200)
    items = sql.Identifier(src_db.schema, "items")
    src.execute(sql.SQL("UPDATE {} SET v = '50%' WHERE id IN (3, 7, 11)").format(items))
    query = sql.SQL("SELECT id, v, ts FROM {} WHERE id % 10 = 0 OR v = '50%'").format(items).as_string(src)
    summary = run_transfer(
        TransferSpec(
            source_sql=query,
            key_column="id",
            destination_table=f"{dst_db.schema}.items",
            chunk_rows=7,
            checkpoint_schema=dst_db.schema,
            parallelism=parallelism,
        ),
        src_db.conninfo,
        dst_db.conninfo,
    )
    expected = [(3, "50%"), (7, "50%"), (11, "50%")] + [(i, f"v{i}") for i in range(10, 201, 10)]
    assert summary.rows == len(expected) == 23
    assert _rows(dst, dst_db.schema) == sorted(expected)


# -- resume --------------------------------------------------------------------------------------


def _fail_once_at(dst: Any, schema: str, key: int) -> None:
    """A destination trigger that rejects `key` exactly once (sequences survive the rollback)."""
    dst.execute(sql.SQL("CREATE SEQUENCE {}").format(sql.Identifier(schema, "fault_seq")))
    dst.execute(
        sql.SQL(
            """CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = {key} AND nextval({seq}::regclass) = 1 THEN
                RAISE EXCEPTION 'injected fault at id %', NEW.id;
            END IF;
            RETURN NEW;
        END $$"""
        ).format(
            fn=sql.Identifier(schema, "fault"),
            key=sql.Literal(key),
            seq=sql.Literal(sql.Identifier(schema, "fault_seq").as_string(dst)),
        )
    )
    dst.execute(
        sql.SQL("CREATE TRIGGER fault BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(schema, "items"), sql.Identifier(schema, "fault")
        )
    )


@pytest.mark.parametrize("parallelism", [1, 2])
def test_resume_after_a_failed_chunk_loses_and_duplicates_nothing(
    src_db: Any, dst_db: Any, parallelism: int
) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=10_000)
    _fail_once_at(dst, dst_db.schema, 4_321)
    with pytest.raises(ChunkLoadError) as failure:
        _run(src_db, dst_db, chunk_rows=1_000, checkpoint_id="resume-me", parallelism=parallelism)
    message = str(failure.value)
    assert f"{dst_db.schema}.items" in message and "injected fault at id 4321" in message
    assert "(4000, " in message  # the failed chunk's key range
    committed = row_count(dst, dst_db.schema, "items")
    assert committed % 1_000 == 0 and committed < 10_000
    summary = _run(src_db, dst_db, chunk_rows=1_000, checkpoint_id="resume-me", parallelism=parallelism)
    assert summary.resumed_from is not None
    assert summary.rows_before_resume == committed
    assert summary.rows_read == 10_000 - committed  # nothing committed is read again
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


def test_rejected_row_names_table_range_and_reason_and_fixed_rerun_completes(
    src_db: Any, dst_db: Any
) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=3_000)
    dst.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT short_v CHECK (length(v) < 5)").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )
    with pytest.raises(ChunkLoadError) as failure:
        _run(src_db, dst_db, chunk_rows=500, checkpoint_id="fix-me")
    message = str(failure.value)
    assert f"{dst_db.schema}.items" in message
    assert "id in (500, 1000]" in message  # 'v1000' is the first value too long
    assert "short_v" in message
    assert row_count(dst, dst_db.schema, "items") == 500
    dst.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT short_v").format(sql.Identifier(dst_db.schema, "items"))
    )
    summary = _run(src_db, dst_db, chunk_rows=500, checkpoint_id="fix-me")
    assert summary.resumed_from == "500"
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


def _fail_checkpoint_once(dst: Any, schema: str, at_rows: int) -> None:
    """Rejects the chunk whose checkpoint would reach `at_rows` rows, once: works for every write
    mode, as the checkpoint commits in the chunk's transaction (the stage does not exist yet)."""
    CheckpointStore(schema, "setup").ensure(dst)
    dst.execute(sql.SQL("CREATE SEQUENCE {}").format(sql.Identifier(schema, "ckpt_fault_seq")))
    dst.execute(
        sql.SQL(
            """CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.rows >= {at} AND nextval({seq}::regclass) = 1 THEN
                RAISE EXCEPTION 'injected checkpoint fault at % rows', NEW.rows;
            END IF;
            RETURN NEW;
        END $$"""
        ).format(
            fn=sql.Identifier(schema, "ckpt_fault"),
            at=sql.Literal(at_rows),
            seq=sql.Literal(sql.Identifier(schema, "ckpt_fault_seq").as_string(dst)),
        )
    )
    dst.execute(
        sql.SQL("CREATE TRIGGER ckpt_fault BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(schema, "transfer_checkpoints"), sql.Identifier(schema, "ckpt_fault")
        )
    )


def _stale_destination(dst: Any, schema: str) -> list[tuple[Any, ...]]:
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'stale', now() FROM generate_series(1, 10) g").format(
            sql.Identifier(schema, "items")
        )
    )
    return _rows(dst, schema)


def _stage_tables(dst: Any, schema: str) -> list[str]:
    found = dst.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'stage\\_%%'", (schema,)
    ).fetchall()
    return [r[0] for r in found]


def test_reset_checkpoint_restages_from_scratch(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=5_000)
    stale = _stale_destination(dst, dst_db.schema)
    _fail_checkpoint_once(dst, dst_db.schema, at_rows=2_000)
    opts: dict[str, Any] = {
        "chunk_rows": 500,
        "write_mode": "truncate",
        "strategy": "staged",
        "checkpoint_id": "restage",
    }
    with pytest.raises(psycopg.Error, match="injected checkpoint fault"):
        _run(src_db, dst_db, **opts)
    assert _rows(dst, dst_db.schema) == stale  # nothing published by the failed attempt
    (stage,) = _stage_tables(dst, dst_db.schema)
    assert row_count(dst, dst_db.schema, stage) == 1_500  # three chunks staged before the fault
    summary = _run(src_db, dst_db, reset_checkpoint=True, **opts)
    assert summary.resumed_from is None and summary.rows_before_resume == 0 and summary.rows == 5_000
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)
    assert _stage_tables(dst, dst_db.schema) == []


def test_a_stage_emptied_by_a_crash_is_never_published(src_db: Any, dst_db: Any) -> None:
    src, dst = _simple_tables(src_db, dst_db, rows=5_000)
    stale = _stale_destination(dst, dst_db.schema)
    _fail_checkpoint_once(dst, dst_db.schema, at_rows=2_000)
    opts: dict[str, Any] = {
        "chunk_rows": 500,
        "write_mode": "truncate",
        "strategy": "staged",
        "checkpoint_id": "crashed",
    }
    with pytest.raises(psycopg.Error, match="injected checkpoint fault"):
        _run(src_db, dst_db, **opts)
    # What crash recovery does to an UNLOGGED table while the (logged) checkpoints survive.
    (stage,) = _stage_tables(dst, dst_db.schema)
    dst.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(dst_db.schema, stage)))

    with pytest.raises(StagingLostError) as lost:
        _run(src_db, dst_db, **opts)
    message = str(lost.value)
    assert f"{dst_db.schema}.items was left unchanged" in message
    assert "holds 3500 rows but the checkpoints recorded 5000 staged rows" in message
    assert "server crash" in message and "restages every row" in message
    assert _rows(dst, dst_db.schema) == stale  # the partial set (3,500 rows) was not swapped in
    left = dst.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE transfer_id = 'crashed'").format(
            sql.Identifier(dst_db.schema, "transfer_checkpoints")
        )
    ).fetchone()
    assert left == (0,) and _stage_tables(dst, dst_db.schema) == []

    summary = _run(src_db, dst_db, **opts)  # the retry restages from the first key
    assert summary.resumed_from is None and summary.rows == 5_000
    assert _rows(dst, dst_db.schema) == _rows(src, src_db.schema)


def test_append_final_commit_stamps_the_checkpoint(src_db: Any, dst_db: Any) -> None:
    """The synchronous final commit must write something, or the async chunks' WAL is not forced."""
    _simple_tables(src_db, dst_db)
    dst = dst_db.connect()
    before = dst.execute("SELECT clock_timestamp()").fetchone()
    assert before is not None
    _run(src_db, dst_db, chunk_rows=300, checkpoint_id="stamp-me")
    found = dst.execute(
        sql.SQL("SELECT done, finished_at FROM {} WHERE transfer_id = 'stamp-me'").format(
            sql.Identifier(dst_db.schema, "transfer_checkpoints")
        )
    ).fetchall()
    assert len(found) == 1 and found[0][0] is True
    assert found[0][1] is not None and found[0][1] >= before[0]


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"source_table": "{s}.nope"}, r"source_table '.*\.nope' does not exist"),
        ({"destination_table": "{d}.nope"}, r"destination_table '.*\.nope' does not exist"),
        ({"key_column": "missing"}, r"key_column 'missing' is not a column of .*items"),
        ({"key_column": "v"}, r"key_column 'v' .* has no unique index"),
        ({"write_mode": "merge"}, r"write_mode 'merge' is not one of"),
        ({"chunk_rows": 0}, r"chunk_rows must be a positive integer"),
        ({"incremental_column": "nope", "window_start": "2026-01-01"}, r"incremental_column 'nope'"),
        ({"write_mode": "delete_insert"}, r"delete_insert.*incremental_column"),
    ],
)
def test_bad_input_is_refused_before_data_moves(
    src_db: Any, dst_db: Any, kwargs: dict[str, Any], pattern: str
) -> None:
    _, dst = _simple_tables(src_db, dst_db)
    kwargs = {
        k: v.format(s=src_db.schema, d=dst_db.schema) if isinstance(v, str) else v for k, v in kwargs.items()
    }
    with pytest.raises(TransferConfigError, match=pattern):
        _run(src_db, dst_db, **kwargs)
    assert row_count(dst, dst_db.schema, "items") == 0


def test_column_mismatches_are_named(src_db: Any, dst_db: Any) -> None:
    _src, dst = _simple_tables(src_db, dst_db)
    dst.execute(
        sql.SQL("ALTER TABLE {} RENAME COLUMN v TO value").format(sql.Identifier(dst_db.schema, "items"))
    )
    with pytest.raises(TransferConfigError, match=r"source columns \['v'\].*no column of the same name"):
        _run(src_db, dst_db)
    dst.execute(
        sql.SQL("ALTER TABLE {} RENAME COLUMN value TO v").format(sql.Identifier(dst_db.schema, "items"))
    )
    dst.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN required int NOT NULL").format(
            sql.Identifier(dst_db.schema, "items")
        )
    )
    with pytest.raises(TransferConfigError, match=r"\['required'\].*NOT NULL without a default"):
        _run(src_db, dst_db)
    assert row_count(dst, dst_db.schema, "items") == 0


def _one_column_tables(src_db: Any, dst_db: Any, src_type: str, dst_type: str, values: str) -> Any:
    """items(id, c) on both sides, c of the given types; `values` is a constant SQL expression list."""
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema, kind in ((src, src_db.schema, src_type), (dst, dst_db.schema, dst_type)):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, c {})").format(
                sql.Identifier(schema, "items"),
                sql.SQL(kind),  # type: ignore[arg-type]  # the test's own constant type names
            )
        )
    src.execute(
        sql.SQL(
            "INSERT INTO {} (id, c) SELECT o, v FROM unnest(ARRAY[{}]) WITH ORDINALITY AS u(v, o)"
        ).format(
            sql.Identifier(src_db.schema, "items"),
            sql.SQL(values),  # type: ignore[arg-type]
        )
    )
    return src, dst


def _column_text(conn: Any, schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT id, c::text FROM {} ORDER BY id").format(sql.Identifier(schema, "items"))
    ).fetchall()


@pytest.mark.parametrize(
    ("src_type", "dst_type", "values", "expected"),
    [
        ("integer", "bigint", "1, -2147483648, NULL", ["1", "-2147483648", None]),
        ("varchar(20)", "text", "'a\tb', 'ü', NULL", ["a\tb", "ü", None]),
        (
            "timestamp",
            "timestamptz",
            "'2026-03-01 12:34:56.789'::timestamp, NULL",
            ["2026-03-01 12:34:56.789+00", None],
        ),
        ("integer", "text", "42, NULL", ["42", None]),
        ("date", "timestamp", "'2026-01-05'::date", ["2026-01-05 00:00:00"]),
        ("interval", "time", "'01:02:03'::interval", ["01:02:03"]),  # other category, assignment cast
    ],
)
def test_compatible_column_types_are_moved_as_text(
    src_db: Any, dst_db: Any, src_type: str, dst_type: str, values: str, expected: list[Any]
) -> None:
    _src, dst = _one_column_tables(src_db, dst_db, src_type, dst_type, values)
    summary = _run(src_db, dst_db)
    assert summary.copy_format == "text"
    assert _column_text(dst, dst_db.schema) == list(enumerate(expected, start=1))


@pytest.mark.parametrize(
    ("src_type", "dst_type", "values"),
    [("text", "integer", "'12', 'x'"), ("jsonb", "integer", "'1'::jsonb"), ("uuid", "date", "NULL::uuid")],
)
def test_incompatible_column_types_are_refused_before_data_moves(
    src_db: Any, dst_db: Any, src_type: str, dst_type: str, values: str
) -> None:
    _src, dst = _one_column_tables(src_db, dst_db, src_type, dst_type, values)
    with pytest.raises(TransferConfigError) as refused:
        _run(src_db, dst_db)
    message = str(refused.value)
    assert f"{dst_db.schema}.items" in message
    assert f"'c': {src_type} -> {dst_type}" in message
    assert f'"c"::{dst_type} AS "c"' in message  # the hint: cast in source_sql
    assert row_count(dst, dst_db.schema, "items") == 0


def test_text_copy_ignores_the_sessions_default_styles(src_db: Any, dst_db: Any) -> None:
    """Server or role defaults (here: libpq options) for DateStyle and friends must not change data."""
    src, dst = src_db.connect(), dst_db.connect()
    src.execute(
        sql.SQL(
            "CREATE TABLE {} (id int PRIMARY KEY, d date, iv interval, f float8, b bytea, ts timestamptz)"
        ).format(sql.Identifier(src_db.schema, "items"))
    )
    dst.execute(  # d date -> timestamp: a type difference, so the rows travel as text
        sql.SQL(
            "CREATE TABLE {} (id int PRIMARY KEY, d timestamp, iv interval, f float8, b bytea, ts timestamptz)"
        ).format(sql.Identifier(dst_db.schema, "items"))
    )
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, date '2026-01-01' + g, make_interval(days => -g, hours => 2, mins => -3), "
            "g / 3.0::float8 + 0.1, decode(lpad(to_hex(g), 4, '0') || '5c00', 'hex'), "
            "timestamptz '2026-03-01 12:00:00+00' + g * interval '1 hour 1 second' FROM generate_series(1, 40) g"
        ).format(sql.Identifier(src_db.schema, "items"))
    )
    styles = "-cDateStyle=SQL,DMY -cIntervalStyle=sql_standard -cextra_float_digits=0 -cbytea_output=escape"
    src_conninfo = src_db.server.conninfo(
        src_db.dbname, options=f"-csearch_path={src_db.schema} {styles} -cTimeZone=Asia/Kolkata"
    )
    dst_conninfo = dst_db.server.conninfo(
        dst_db.dbname, options=f"-csearch_path={dst_db.schema} -cDateStyle=SQL,MDY -cTimeZone=America/Denver"
    )
    spec = TransferSpec(
        source_table=f"{src_db.schema}.items",
        destination_table=f"{dst_db.schema}.items",
        checkpoint_schema=dst_db.schema,
        chunk_rows=7,
        parallelism=2,
    )
    summary = run_transfer(spec, src_conninfo, dst_conninfo)
    assert summary.copy_format == "text" and summary.rows == 40
    query = sql.SQL("SELECT id, d::date, iv, f, b, ts FROM {} ORDER BY id")
    expected = src.execute(query.format(sql.Identifier(src_db.schema, "items"))).fetchall()
    assert expected[3][1].isoformat() == "2026-01-05"  # day 5, month 1: SQL/DMY prints 05/01/2026
    assert dst.execute(query.format(sql.Identifier(dst_db.schema, "items"))).fetchall() == expected


def test_user_defined_types_move_as_text_between_databases(src_db: Any, dst_db: Any) -> None:
    """Binary arrays carry their element type's OID, which differs between the two databases."""
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(
            sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'ok', 'happy')").format(sql.Identifier(schema, "mood"))
        )
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, moods {}[], one {})").format(
                sql.Identifier(schema, "items"),
                sql.Identifier(schema, "mood"),
                sql.Identifier(schema, "mood"),
            )
        )
    oids = [
        conn.execute("SELECT to_regtype(%s)::oid::int", (f"{schema}.mood",)).fetchone()
        for conn, schema in ((src, src_db.schema), (dst, dst_db.schema))
    ]
    assert oids[0] != oids[1]
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, ARRAY['happy', NULL, 'sad']::mood[], "
            "(ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood FROM generate_series(1, 50) g"
        ).format(sql.Identifier(src_db.schema, "items"))
    )
    summary = _run(src_db, dst_db, chunk_rows=20)
    assert summary.copy_format == "text" and summary.rows == 50
    query = sql.SQL("SELECT id, moods::text, one::text FROM {} ORDER BY id")
    expected = src.execute(query.format(sql.Identifier(src_db.schema, "items"))).fetchall()
    assert expected[0] == (1, "{happy,NULL,sad}", "ok")
    assert dst.execute(query.format(sql.Identifier(dst_db.schema, "items"))).fetchall() == expected


def test_missing_key_is_refused(src_db: Any, dst_db: Any) -> None:
    src, _ = _simple_tables(src_db, dst_db)
    src.execute(sql.SQL("CREATE TABLE {} (a int, b text)").format(sql.Identifier(src_db.schema, "nokey")))
    with pytest.raises(TransferConfigError, match=r"nokey has no primary key: set key_column"):
        _run(src_db, dst_db, source_table=f"{src_db.schema}.nokey")
    with pytest.raises(TransferConfigError, match="key_column is required with source_sql"):
        TransferSpec(source_sql="SELECT 1 AS a", destination_table="x")


def test_quoted_names_need_no_escaping(src_db: Any, dst_db: Any) -> None:
    src, dst = src_db.connect(), dst_db.connect()
    for conn, schema in ((src, src_db.schema), (dst, dst_db.schema)):
        conn.execute(
            sql.SQL('CREATE TABLE {} ("Order ID" int PRIMARY KEY, "user" text, "From" date)').format(
                sql.Identifier(schema, "Weird Table; DROP")
            )
        )
    src.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, 'u' || g, date '2026-01-01' + g FROM generate_series(1, 99) g"
        ).format(sql.Identifier(src_db.schema, "Weird Table; DROP"))
    )
    summary = _run(
        src_db,
        dst_db,
        source_table=f"{src_db.schema}.Weird Table; DROP",
        destination_table=f'"{dst_db.schema}"."Weird Table; DROP"',
        chunk_rows=10,
        incremental_column="From",
        window_start="2026-01-01",
        window_end="2026-02-01",
    )
    assert summary.rows == 30
    query = sql.SQL('SELECT "Order ID", "user", "From" FROM {} ORDER BY 1')
    got = dst.execute(query.format(sql.Identifier(dst_db.schema, "Weird Table; DROP"))).fetchall()
    assert got == [(g, f"u{g}", date(2026, 1, 1) + timedelta(days=g)) for g in range(1, 31)]


def test_progress_is_logged_per_chunk(src_db: Any, dst_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    _simple_tables(src_db, dst_db)
    caplog.set_level("INFO", logger="etl_platform")
    started = time.perf_counter()
    _run(src_db, dst_db, chunk_rows=400)
    lines = [r.getMessage() for r in caplog.records if "chunk" in r.getMessage()]
    assert len(lines) == 3, lines
    assert "400/~1,000 rows (40.0%)" in lines[0] and "rows/s, ETA" in lines[0]
    assert "1,000/~1,000 rows (100.0%)" in lines[-1]
    assert time.perf_counter() - started < 60

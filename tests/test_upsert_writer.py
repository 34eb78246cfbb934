"""write_mode="upsert" (transfer/upsert.py): last row wins, identity columns, transforms, resume, and
when the per-chunk DISTINCT ON may be skipped."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer import TransferSpec, run_transfer
from etl_platform.transfer.plan import build_plan
from etl_platform.transfer.upsert import UpsertWriter

CHUNK = 100


def _items(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "items")


def _tables(src_db: Any, dst_db: Any, *, src_ddl: str, dst_ddl: str, fill: str, rows: int) -> tuple[Any, Any]:
    src, dst = src_db.connect(), dst_db.connect()
    src.execute(sql.SQL(src_ddl).format(_items(src_db.schema)))  # type: ignore[arg-type]
    dst.execute(sql.SQL(dst_ddl).format(_items(dst_db.schema)))  # type: ignore[arg-type]
    src.execute(sql.SQL(fill).format(_items(src_db.schema)), (rows,))  # type: ignore[arg-type]
    src.execute(sql.SQL("ANALYZE {}").format(_items(src_db.schema)))
    return src, dst


def _spec(src_db: Any, dst_db: Any, **kwargs: Any) -> TransferSpec:
    kwargs.setdefault("source_table", f"{src_db.schema}.items")
    kwargs.setdefault("destination_table", f"{dst_db.schema}.items")
    kwargs.setdefault("checkpoint_schema", dst_db.schema)
    kwargs.setdefault("write_mode", "upsert")
    kwargs.setdefault("chunk_rows", CHUNK)
    return TransferSpec(**kwargs)


def _run(src_db: Any, dst_db: Any, **kwargs: Any) -> Any:
    return run_transfer(_spec(src_db, dst_db, **kwargs), src_db.conninfo, dst_db.conninfo)


def _writer(src_db: Any, dst_db: Any, **kwargs: Any) -> UpsertWriter:
    """The writer the engine would build for this spec, prepared against the destination."""
    spec = _spec(src_db, dst_db, **kwargs)
    with src_db.connect() as src, dst_db.connect() as dst:
        plan = build_plan(spec, src, dst)
        writer = UpsertWriter(plan, dst_db.schema, "t")
        columns = None if spec.transform is not None else tuple(c.name for c in plan.dest_columns)
        writer.prepare(dst, columns)
    return writer


def _select(conn: Any, schema: str, cols: str = "id, v") -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY id").format(sql.SQL(cols), _items(schema))  # type: ignore[arg-type]
    ).fetchall()


SIMPLE_DDL = "CREATE TABLE {} (id int PRIMARY KEY, v text NOT NULL)"
SIMPLE_FILL = "INSERT INTO {} SELECT g, 'v' || g FROM generate_series(1, %s) g"


# -- exactness --------------------------------------------------------------------------------------


def test_the_key_path_updates_inserts_and_keeps_other_rows(src_db: Any, dst_db: Any) -> None:
    src, dst = _tables(src_db, dst_db, src_ddl=SIMPLE_DDL, dst_ddl=SIMPLE_DDL, fill=SIMPLE_FILL, rows=1_000)
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'old' FROM generate_series(2, 1200, 2) g").format(
            _items(dst_db.schema)
        )
    )
    assert _writer(src_db, dst_db).unique_chunks  # primary key to primary key: no DISTINCT ON
    summary = _run(src_db, dst_db)
    assert (summary.strategy, summary.rows, summary.chunks) == ("upsert", 1_000, 10)
    expected = _select(src, src_db.schema) + [(i, "old") for i in range(1_002, 1_201, 2)]
    assert _select(dst, dst_db.schema) == expected


def test_last_row_per_conflict_key_wins_within_and_across_chunks(src_db: Any, dst_db: Any) -> None:
    # 600 keys, 50 values of v: each chunk holds each v twice, every v is in six chunks.
    _src, dst = _tables(
        src_db,
        dst_db,
        src_ddl=SIMPLE_DDL,
        dst_ddl="CREATE TABLE {} (id int PRIMARY KEY, v text NOT NULL UNIQUE)",
        fill="INSERT INTO {} SELECT g, 'k' || (g %% 50) FROM generate_series(1, %s) g",
        rows=600,
    )
    dst.execute(sql.SQL("INSERT INTO {} VALUES (-1, 'k7'), (-2, 'untouched')").format(_items(dst_db.schema)))
    assert not _writer(src_db, dst_db, conflict_columns=("v",)).unique_chunks
    _run(src_db, dst_db, conflict_columns=("v",))
    last = {f"k{k}": max(i for i in range(1, 601) if i % 50 == k) for k in range(50)}
    expected = sorted([(i, v) for v, i in last.items()] + [(-2, "untouched")])
    assert _select(dst, dst_db.schema) == expected


def test_identity_columns_keep_their_values(src_db: Any, dst_db: Any) -> None:
    _src, dst = _tables(
        src_db,
        dst_db,
        src_ddl="CREATE TABLE {} (id int PRIMARY KEY, v text NOT NULL, rid int NOT NULL)",
        dst_ddl=(
            "CREATE TABLE {} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL, "
            "rid int GENERATED ALWAYS AS IDENTITY (START WITH 5000) UNIQUE)"
        ),
        fill="INSERT INTO {} SELECT g, 'v' || g, 100 + g FROM generate_series(1, %s) g",
        rows=300,
    )
    dst.execute(
        sql.SQL(
            "INSERT INTO {} OVERRIDING SYSTEM VALUE VALUES (7, 'old', 9007), (900, 'stays', 9900)"
        ).format(_items(dst_db.schema))
    )
    assert _writer(src_db, dst_db).unique_chunks
    _run(src_db, dst_db)
    expected = [(i, f"v{i}", 9007 if i == 7 else 100 + i) for i in range(1, 301)] + [(900, "stays", 9900)]
    assert _select(dst, dst_db.schema, "id, v, rid") == expected  # row 7 was updated, kept its rid


def test_a_transform_keeps_the_last_row_per_key(src_db: Any, dst_db: Any) -> None:
    _src, dst = _tables(src_db, dst_db, src_ddl=SIMPLE_DDL, dst_ddl=SIMPLE_DDL, fill=SIMPLE_FILL, rows=400)
    dst.execute(sql.SQL("INSERT INTO {} VALUES (3, 'old'), (1000, 'stays')").format(_items(dst_db.schema)))

    def fold(df: pd.DataFrame) -> pd.DataFrame:  # keys 2k-1 and 2k become k: duplicates inside each chunk
        return df.assign(id=(df["id"] + 1) // 2, v=df["v"].str.upper())

    assert not _writer(src_db, dst_db, transform=fold).unique_chunks
    summary = _run(src_db, dst_db, transform=fold)
    assert summary.rows == 400
    got = dict(_select(dst, dst_db.schema))
    assert len(got) == 201 and got.pop(1_000) == "stays"
    assert all(got[k] in (f"V{2 * k - 1}", f"V{2 * k}") for k in range(1, 201)), got


# -- when the DISTINCT ON is skipped ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dst_ddl", "kwargs", "unique"),
    [
        pytest.param(SIMPLE_DDL, {}, True, id="primary-key"),
        pytest.param("CREATE TABLE {} (id bigint PRIMARY KEY, v text NOT NULL)", {}, False, id="cast-key"),
        pytest.param(
            SIMPLE_DDL,
            {"source_table": None, "source_sql": "SELECT id, v FROM {schema}.items", "key_column": "id"},
            False,
            id="source-sql",
        ),
        pytest.param(SIMPLE_DDL, {"transform": lambda df: df}, False, id="transform"),
    ],
)
def test_distinct_on_is_skipped_only_for_a_proven_unique_key(
    src_db: Any, dst_db: Any, dst_ddl: str, kwargs: dict[str, Any], unique: bool
) -> None:
    src, dst = _tables(src_db, dst_db, src_ddl=SIMPLE_DDL, dst_ddl=dst_ddl, fill=SIMPLE_FILL, rows=250)
    if kwargs.get("source_sql"):
        kwargs["source_sql"] = kwargs["source_sql"].format(schema=src_db.schema)
    writer = _writer(src_db, dst_db, **kwargs)
    assert writer.unique_chunks is unique
    statement = writer.upsert_statement(("id", "v")).as_string(dst)
    assert ("DISTINCT ON" in statement) is not unique
    _run(src_db, dst_db, **kwargs)
    assert _select(dst, dst_db.schema) == _select(src, src_db.schema)


def test_keys_equal_under_the_destination_collation_are_deduplicated(src_db: Any, dst_db: Any) -> None:
    with dst_db.connect() as dst:
        try:  # non-deterministic collations need ICU; the embedded fallback server is built without it
            dst.execute(
                sql.SQL(
                    "CREATE COLLATION {} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
                ).format(sql.Identifier(dst_db.schema, "ci"))
            )
        except psycopg.errors.FeatureNotSupported as exc:
            pytest.skip(f"this PostgreSQL has no ICU: {exc}")
        collation = sql.Identifier(dst_db.schema, "ci").as_string(dst)
    _src, dst = _tables(
        src_db,
        dst_db,
        src_ddl="CREATE TABLE {} (id text PRIMARY KEY, v text NOT NULL)",
        dst_ddl="CREATE TABLE {} (id text COLLATE " + collation + " PRIMARY KEY, v text NOT NULL)",
        fill="INSERT INTO {} SELECT k, k || '!' FROM unnest(ARRAY['a', 'A', 'b', 'c', 'C']) k WHERE %s > 0",
        rows=1,
    )
    assert not _writer(src_db, dst_db).unique_chunks  # 'a' and 'A' are one key in the destination
    _run(src_db, dst_db)
    got = dst.execute(
        sql.SQL("SELECT lower(id), v FROM {} ORDER BY 1").format(_items(dst_db.schema))
    ).fetchall()
    assert [k for k, _ in got] == ["a", "b", "c"]
    assert {k: v.lower() for k, v in got} == {"a": "a!", "b": "b!", "c": "c!"}


# -- resume ------------------------------------------------------------------------------------------


class _Crash(Exception):
    pass


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_failure_after_k_chunks_resumes_after_them(
    src_db: Any, dst_db: Any, monkeypatch: pytest.MonkeyPatch, parallelism: int
) -> None:
    rows, committed_chunks = 2_000, 4
    src, dst = _tables(src_db, dst_db, src_ddl=SIMPLE_DDL, dst_ddl=SIMPLE_DDL, fill=SIMPLE_FILL, rows=rows)
    dst.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'old' FROM generate_series(0, 2400, 3) g").format(
            _items(dst_db.schema)
        )
    )
    before = dict(_select(dst, dst_db.schema))
    calls = 0
    lock = threading.Lock()
    real = UpsertWriter.after_copy

    def after_copy(self: UpsertWriter, cur: Any, columns: tuple[str, ...]) -> None:
        nonlocal calls
        real(self, cur, columns)  # the chunk's upsert ran; from the (k+1)-th on, nothing commits
        with lock:
            calls += 1
            if calls > committed_chunks:
                raise _Crash

    monkeypatch.setattr(UpsertWriter, "after_copy", after_copy)
    with pytest.raises(_Crash):
        _run(src_db, dst_db, checkpoint_id="upsert-resume", parallelism=parallelism)
    monkeypatch.undo()

    got = dict(_select(dst, dst_db.schema))
    changed = {k for k in got if got[k] != before.get(k)}
    assert len(changed) == committed_chunks * CHUNK  # whole committed chunks, nothing of the failed one
    summary = _run(src_db, dst_db, checkpoint_id="upsert-resume", parallelism=parallelism)
    assert summary.rows_before_resume == committed_chunks * CHUNK
    assert summary.rows_read == rows - committed_chunks * CHUNK  # the failed chunk is the only one read twice
    expected = {**before, **dict(_select(src, src_db.schema))}
    assert dict(_select(dst, dst_db.schema)) == expected
    leftovers = dst.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE transfer_id = 'upsert-resume'").format(
            sql.Identifier(dst_db.schema, "transfer_checkpoints")
        )
    ).fetchone()
    assert leftovers == (0,)  # a finished upsert forgets its checkpoint

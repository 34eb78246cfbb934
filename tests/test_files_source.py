"""Files as a transfer source, against real PostgreSQL and real files: exact values, dialects, bad input, resume."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import fsspec
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from etl_platform.transfer import TransferConfigError, TransferEngine, TransferError, TransferSpec
from etl_platform.transfer.sources.files import CsvOptions, FileSource

FS = fsspec.filesystem("file")

TYPED_DDL = """
CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {table} (
    id          bigint PRIMARY KEY,
    small       smallint,
    amount      numeric(12,2),
    big_amount  numeric,
    ratio       double precision,
    name        text,
    code        text,
    ts          timestamptz,
    local_ts    timestamp,
    day         date,
    flag        boolean,
    blob        bytea,
    doc         jsonb,
    uid         uuid,
    mood        {schema}.mood,
    loaded_at   timestamptz NOT NULL DEFAULT now()
)
"""
TYPED_COLUMNS = (
    "id", "small", "amount", "big_amount", "ratio", "name", "code", "ts", "local_ts", "day", "flag", "blob",
    "doc", "uid", "mood",
)  # fmt: skip
HOSTILE_TEXT = [
    "",
    None,
    'say "hi", ok',
    "new\nline\r\nand return",
    "back\\slash \\N",
    "emoji 🎉 日本語",
    "plain",
]
FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 1 / 3, 1e300, None]


def typed_rows(first: int, count: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(first, first + count):
        rows.append(
            {
                "id": i,
                "small": (i % 65536) - 32768,
                "amount": Decimal(f"{i % 10_000_000}.{i % 100:02d}"),
                "big_amount": Decimal("-1234567890123456789012345678.0123456789")
                if i % 5 == 0
                else Decimal(i),
                "ratio": FLOATS[i % len(FLOATS)],
                "name": HOSTILE_TEXT[i % len(HOSTILE_TEXT)],
                "code": f"{i % 1000:05d}",
                "ts": datetime(2026, 1, 1, 12, 0, 0, i % 1_000_000, tzinfo=UTC),
                "local_ts": datetime(1999, 12, 31, 23, 59, 59, 999_999 - i % 1000),
                "day": date(2026, 1, 1 + i % 28),
                "flag": None if i % 3 == 0 else i % 2 == 0,
                "blob": None if i % 4 == 0 else bytes([0, i % 256, 255]) if i % 4 != 1 else b"",
                "doc": {"n": i, "tags": ["a", "b"], "nested": {"x": None}} if i % 2 else None,
                "uid": str(UUID(int=i)),
                "mood": ("sad", "ok", "happy")[i % 3],
            }
        )
    return rows


TYPED_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("small", pa.int16()),
        ("amount", pa.decimal128(12, 2)),
        ("big_amount", pa.decimal128(38, 10)),
        ("ratio", pa.float64()),
        ("name", pa.string()),
        ("code", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("local_ts", pa.timestamp("us")),
        ("day", pa.date32()),
        ("flag", pa.bool_()),
        ("blob", pa.binary()),
        (
            "doc",
            pa.struct(
                [
                    ("n", pa.int64()),
                    ("tags", pa.list_(pa.string())),
                    ("nested", pa.struct([("x", pa.int64())])),
                ]
            ),
        ),
        ("uid", pa.string()),
        ("mood", pa.dictionary(pa.int32(), pa.string())),
    ]
)


def write_typed(path: Path, first: int, count: int, row_group_size: int) -> list[dict[str, Any]]:
    rows = typed_rows(first, count)
    table = pa.Table.from_pylist(rows, schema=TYPED_SCHEMA)
    pq.write_table(table, path, row_group_size=row_group_size)
    return rows


def create_typed(conn: psycopg.Connection[Any], schema: str, name: str = "t") -> None:
    conn.execute(
        sql.SQL(TYPED_DDL).format(schema=sql.Identifier(schema), table=sql.Identifier(schema, name))  # type: ignore[arg-type]
    )


def comparable(value: Any) -> Any:
    """NaN equals NaN; -0.0 keeps its sign; everything else as psycopg/pyarrow gives it."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else (value, math.copysign(1, value))
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def table_rows(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(*table.split("."))
    )
    return [tuple(comparable(v) for v in row) for row in conn.execute(query).fetchall()]


def expected(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted(tuple(comparable(r[c]) for c in columns) for r in rows)


def run(dst_db: Any, source: FileSource, paths: tuple[str, ...], **kwargs: Any) -> Any:
    kwargs.setdefault("destination_table", dst_db.table("t"))
    kwargs.setdefault("checkpoint_schema", dst_db.schema)
    spec = TransferSpec(source_path=paths, **kwargs)
    return TransferEngine(spec, source, lambda: psycopg.connect(dst_db.conninfo)).run()


def checksum(conn: psycopg.Connection[Any], table: str) -> tuple[int, int, int]:
    ident = sql.Identifier(*table.split("."))
    row = conn.execute(
        sql.SQL("SELECT count(*), count(DISTINCT id), sum(hashtext(t::text)) FROM {} t").format(ident)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2] or 0)


# -- Parquet --------------------------------------------------------------------------------------


def test_parquet_list_append_is_exact(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    rows = write_typed(tmp_path / "a.parquet", 1, 700, row_group_size=250)
    rows += write_typed(tmp_path / "b.parquet", 701, 300, row_group_size=1000)
    paths = (str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"))
    summary = run(dst_db, FileSource(FS, paths), paths, chunk_rows=200)
    assert summary.rows == 1000
    assert summary.copy_format == "csv"
    assert summary.consistency == "files as listed at plan time"
    assert summary.chunks == 4 + 2  # a: 200-row chunks over 250-row groups; b: 200 + 100
    assert table_rows(conn, dst_db.table("t"), TYPED_COLUMNS) == expected(rows, TYPED_COLUMNS)


BINARY_DDL = """
CREATE TABLE {table} (
    id        bigint PRIMARY KEY,
    small     smallint,
    qty       integer,
    price     numeric(18,4),
    tiny      numeric(5,3),
    amount    numeric(12,2),
    ratio     double precision,
    ratio32   real,
    name      text,
    code      varchar(10),
    ts        timestamptz,
    local_ts  timestamp,
    day       date,
    at        time,
    flag      boolean,
    blob      bytea,
    doc       jsonb,
    raw       json
)
"""
BINARY_COLUMNS = (
    "id", "small", "qty", "price", "tiny", "amount", "ratio", "ratio32", "name", "code", "ts", "local_ts", "day",
    "at", "flag", "blob", "doc", "raw",
)  # fmt: skip


def binary_rows(count: int) -> list[dict[str, Any]]:
    prices = [
        Decimal("99999999999999.9999"),
        Decimal("-99999999999999.9999"),
        Decimal("0.0001"),
        Decimal("0"),
        None,
    ]
    tinies = [Decimal("99.999"), Decimal("-99.999"), Decimal("-0.001"), Decimal("10.5"), None]
    return [
        {
            "id": i,
            "small": [-32768, 32767, 0, None][i % 4],
            "qty": [-2147483648, 2147483647, i, None][i % 4],
            "price": prices[i % len(prices)],
            "tiny": tinies[i % len(tinies)],
            "amount": None if i % 7 == 0 else Decimal(i * (-1) ** i) / 100,
            "ratio": FLOATS[i % len(FLOATS)],
            "ratio32": [0.5, -0.0, float("inf"), None][i % 4],
            "name": HOSTILE_TEXT[i % len(HOSTILE_TEXT)],
            "code": f"{i:07d}",
            "ts": datetime(2026, 1, 1, 12, 0, 0, i % 1_000_000, tzinfo=UTC) if i % 5 else None,
            "local_ts": datetime(1970 + i % 100, 1, 1, 0, 0, 0, 999_999),
            "day": date(1999 + i % 3, 12, 31),
            "at": time(23, 59, 59, i % 1_000_000),
            "flag": None if i % 3 == 0 else i % 2 == 0,
            "blob": None if i % 4 == 0 else bytes([0, i % 256, 255]) if i % 4 != 1 else b"",
            "doc": {"n": i, "tags": ["a", "é"]} if i % 2 else None,
            "raw": f'{{"i": {i}}}',
        }
        for i in range(1, count + 1)
    ]


def test_parquet_binary_copy_is_exact(dst_db: Any, tmp_path: Path) -> None:
    """Columns that all have a binary form load through binary COPY (vectorized encoder), exactly."""
    conn = dst_db.connect()
    conn.execute(sql.SQL(BINARY_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    rows = binary_rows(403)
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("id", pa.int64()),
                ("small", pa.int16()),
                ("qty", pa.int32()),
                ("price", pa.decimal128(18, 4)),
                ("tiny", pa.decimal128(5, 3)),
                ("amount", pa.decimal128(9, 2)),
                ("ratio", pa.float64()),
                ("ratio32", pa.float32()),
                ("name", pa.large_string()),
                ("code", pa.string()),
                ("ts", pa.timestamp("ms", tz="UTC")),
                ("local_ts", pa.timestamp("us")),
                ("day", pa.date32()),
                ("at", pa.time64("us")),
                ("flag", pa.bool_()),
                ("blob", pa.binary()),
                ("doc", pa.struct([("n", pa.int64()), ("tags", pa.list_(pa.string()))])),
                ("raw", pa.string()),
            ]
        ),
    )
    table = table.set_column(9, "code", table.column("code").dictionary_encode())
    for i in range(0, 403, 150):
        pq.write_table(table.slice(i, 150), tmp_path / f"b{i:04d}.parquet", row_group_size=64)
    paths = (str(tmp_path / "*.parquet"),)
    summary = run(dst_db, FileSource(FS, paths), paths, chunk_rows=50)
    assert summary.copy_format == "binary"
    assert summary.rows == 403
    # The file stores ts in milliseconds; psycopg reads json as its value.
    want = [
        {
            **r,
            "ts": r["ts"].replace(microsecond=r["ts"].microsecond // 1000 * 1000) if r["ts"] else None,
            "raw": {"i": r["id"]},
        }
        for r in rows
    ]
    got, wanted = table_rows(conn, dst_db.table("t"), BINARY_COLUMNS), expected(want, BINARY_COLUMNS)
    for g, w in zip(got, wanted, strict=True):
        assert dict(zip(BINARY_COLUMNS, g, strict=True)) == dict(zip(BINARY_COLUMNS, w, strict=True))


def test_parquet_glob_truncate_replaces_rows(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    conn.execute(
        sql.SQL("INSERT INTO {} (id, name) VALUES (99999, 'old')").format(sql.Identifier(dst_db.schema, "t"))
    )
    (tmp_path / "in").mkdir()
    rows = write_typed(tmp_path / "in" / "part-0.parquet", 1, 120, row_group_size=50)
    rows += write_typed(tmp_path / "in" / "part-1.parquet", 121, 80, row_group_size=50)
    (tmp_path / "in" / "_SUCCESS").write_bytes(b"")  # markers beside data files are skipped
    paths = (str(tmp_path / "in" / "*"),)
    summary = run(dst_db, FileSource(FS, paths), paths, write_mode="truncate", chunk_rows=64)
    assert summary.rows == 200
    assert table_rows(conn, dst_db.table("t"), TYPED_COLUMNS) == expected(rows, TYPED_COLUMNS)


def test_parquet_upsert_updates_and_inserts(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, name, code) SELECT g, 'old', 'old' FROM generate_series(1, 10) g"
        ).format(sql.Identifier(dst_db.schema, "t"))
    )
    rows = write_typed(tmp_path / "u.parquet", 6, 10, row_group_size=4)  # ids 6..15: 5 updates, 5 inserts
    paths = (str(tmp_path / "u.parquet"),)
    summary = run(dst_db, FileSource(FS, paths), paths, write_mode="upsert", chunk_rows=3)
    assert summary.rows == 10
    got = table_rows(conn, dst_db.table("t"), ("id", "name", "code"))
    assert got[:5] == [(i, "old", "old") for i in range(1, 6)]
    assert got[5:] == expected(rows, ("id", "name", "code"))


def test_identity_transform_reads_file_chunks_exactly(dst_db: Any, tmp_path: Path) -> None:
    """The engine's transform path parses the chunks as PostgreSQL CSV: booleans, zoned times, bytea hex."""
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    rows = write_typed(tmp_path / "x.parquet", 1, 90, row_group_size=40)
    paths = (str(tmp_path / "x.parquet"),)
    summary = run(
        dst_db, FileSource(FS, paths), paths, chunk_rows=25, transform=lambda t: t, transform_format="arrow"
    )
    assert summary.rows == 90
    assert table_rows(conn, dst_db.table("t"), TYPED_COLUMNS) == expected(rows, TYPED_COLUMNS)


def test_incremental_window_delete_insert(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, day, name) VALUES (1000, '2026-01-05', 'stale'), (2000, '2026-01-20', 'kept')"
        ).format(sql.Identifier(dst_db.schema, "t"))
    )
    rows = write_typed(tmp_path / "w.parquet", 1, 56, row_group_size=20)  # days 2026-01-02 .. 2026-01-28
    paths = (str(tmp_path / "w.parquet"),)
    summary = run(
        dst_db,
        FileSource(FS, paths),
        paths,
        write_mode="delete_insert",
        incremental_column="day",
        window_start="2026-01-03",
        window_end=date(2026, 1, 10),
        chunk_rows=15,
    )
    inside = [r for r in rows if date(2026, 1, 3) <= r["day"] < date(2026, 1, 10)]
    assert summary.rows == len(inside) == 14
    got = table_rows(conn, dst_db.table("t"), ("id", "day", "name"))
    assert got == sorted([*expected(inside, ("id", "day", "name")), (2000, date(2026, 1, 20), "kept")])


# -- CSV ------------------------------------------------------------------------------------------

CSV_DDL = """
CREATE TABLE {table} (
    id      integer PRIMARY KEY,
    code    text,
    label   text,
    price   numeric(8,2),
    seen    date,
    ok      boolean,
    at      timestamptz
)
"""
# Dialect: ';' delimiter, no header, NA for NULL, latin-1, quote char "'".
CSV_LINES = [
    "1;00123;'caf\xe9; au lait';1.50;2026-01-02;yes;2026-01-02 10:00:00",
    "2;007;NA;NA;NA;f;2026-01-02T10:00:00+02:00",
    "3;'NA';'it''s';0;2026-02-28;TRUE;NA",
    "4;;'multi\nline';-2.25;2026-03-01;0;2026-01-01 00:00:00.000001",
]
CSV_EXPECTED = [
    (
        1,
        "00123",
        "café; au lait",
        Decimal("1.50"),
        date(2026, 1, 2),
        True,
        datetime(2026, 1, 2, 10, tzinfo=UTC),
    ),
    (2, "007", None, None, None, False, datetime(2026, 1, 2, 8, tzinfo=UTC)),
    (3, "NA", "it's", Decimal("0.00"), date(2026, 2, 28), True, None),
    (
        4,
        "",
        "multi\nline",
        Decimal("-2.25"),
        date(2026, 3, 1),
        False,
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ),
]
DIALECT = CsvOptions(delimiter=";", header=False, null_string="NA", encoding="latin-1", quote_char="'")


def _write_compressed(path: Path, data: bytes) -> None:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith(".zst"):
        with pa.OSFile(str(path), "wb") as raw, pa.CompressedOutputStream(raw, "zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz", "d.csv.zst"])
def test_csv_dialect_plain_gzip_zstd(dst_db: Any, tmp_path: Path, name: str) -> None:
    conn = dst_db.connect()
    conn.execute(sql.SQL(CSV_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    _write_compressed(tmp_path / name, ("\n".join(CSV_LINES) + "\n").encode("latin-1"))
    paths = (str(tmp_path / name),)
    summary = run(dst_db, FileSource(FS, paths, csv=DIALECT), paths, chunk_rows=3)
    assert summary.rows == 4
    assert (
        conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(dst_db.schema, "t"))
        ).fetchall()
        == CSV_EXPECTED
    )


def test_csv_header_columns_in_any_order(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(sql.SQL(CSV_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    (tmp_path / "h.csv").write_text('code,id,label\n"0042",1,""\n0043,2,\n', encoding="utf-8")
    paths = (str(tmp_path / "h.csv"),)
    run(dst_db, FileSource(FS, paths), paths)
    assert conn.execute(
        sql.SQL("SELECT id, code, label FROM {} ORDER BY id").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchall() == [(1, "0042", ""), (2, "0043", None)]


# -- bad input ------------------------------------------------------------------------------------


def test_schema_mismatch_fails_before_any_row(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(
        sql.SQL("CREATE TABLE {} (id bigint, qty integer)").format(sql.Identifier(dst_db.schema, "t"))
    )
    pq.write_table(
        pa.table({"id": pa.array([1, 2], pa.int64()), "qty": pa.array([1, 2], pa.int32())}),
        tmp_path / "a.parquet",
    )
    pq.write_table(
        pa.table({"id": pa.array([3], pa.int64()), "qty": pa.array([3], pa.int64())}), tmp_path / "b.parquet"
    )
    paths = (str(tmp_path / "*.parquet"),)
    with pytest.raises(TransferConfigError) as err:
        run(dst_db, FileSource(FS, paths), paths)
    message = str(err.value)
    assert str(tmp_path / "b.parquet") in message
    assert "'qty'" in message and "int64" in message and "integer" in message
    assert conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchone() == (0,)


def test_nested_column_refused_unless_json(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint, tags text)").format(sql.Identifier(dst_db.schema, "t")))
    pq.write_table(
        pa.table({"id": [1], "tags": pa.array([["a"]], pa.list_(pa.string()))}), tmp_path / "n.parquet"
    )
    paths = (str(tmp_path / "n.parquet"),)
    with pytest.raises(
        TransferConfigError, match=r"n\.parquet: column 'tags' is list<element: string> .* is text"
    ):
        run(dst_db, FileSource(FS, paths), paths)


CSV_BAD = 'id,code,label,price,seen,ok,at\n1,a,x,1,2026-01-01,t,\n2,b,y,2,2026-01-01,t,\n3,c,"two\nlines",3,2026-01-01,t,\n4,d,z,4,2026-13-01,t,\n5,e,w,5,2026-01-01,maybe,\n6,f,v,6,2026-01-01,f,\n'


def test_bad_csv_row_names_file_line_and_column(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(sql.SQL(CSV_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    (tmp_path / "bad.csv").write_text(CSV_BAD)
    paths = (str(tmp_path / "bad.csv"),)
    with pytest.raises(TransferError) as err:
        run(dst_db, FileSource(FS, paths), paths)
    assert f"{tmp_path / 'bad.csv'}: line 6, column 'seen'" in str(err.value)  # line 4 spans two lines
    assert "'2026-13-01'" in str(err.value)


def test_bad_csv_rows_go_to_the_reject_file_up_to_the_cap(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(sql.SQL(CSV_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    (tmp_path / "bad.csv").write_text(CSV_BAD)
    paths = (str(tmp_path / "bad.csv"),)
    rejects = tmp_path / "rejects" / "bad_rows.csv"
    summary = run(dst_db, FileSource(FS, paths, reject_path=str(rejects), max_rejects=2), paths)
    assert summary.rows == 4
    ids = conn.execute(
        sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchall()
    assert ids == [(1,), (2,), (3,), (6,)]
    got = pacsv.read_csv(rejects).to_pylist()
    assert [(r["line"], r["column"]) for r in got] == [(6, "seen"), (7, "ok")]
    assert got[0]["file"] == str(tmp_path / "bad.csv")
    assert got[0]["record"] == "4,d,z,4,2026-13-01,t,"
    assert not [p for p in rejects.parent.iterdir() if p.name != "bad_rows.csv"]  # no temporary file left

    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(dst_db.schema, "t")))
    with pytest.raises(TransferError, match=r"line 7, column 'ok'.*reject limit of 1 rows"):
        run(dst_db, FileSource(FS, paths, reject_path=str(rejects), max_rejects=1), paths)


def test_rows_with_the_wrong_field_count(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(
        sql.SQL("CREATE TABLE {} (id integer, label text)").format(sql.Identifier(dst_db.schema, "t"))
    )
    (tmp_path / "ragged.csv").write_text("id,label\n1,a\n2,b,extra\n3,c\n4\n5,e\n")
    paths = (str(tmp_path / "ragged.csv"),)
    with pytest.raises(TransferError, match=r"ragged\.csv: a row after line \d+ does not parse"):
        run(dst_db, FileSource(FS, paths), paths)
    rejects = tmp_path / "ragged.rejects.csv"
    rejects.write_text("file,line,column,error,record\nold.csv,1,x,stale,row\n")  # an earlier run's file
    summary = run(dst_db, FileSource(FS, paths, reject_path=str(rejects), max_rejects=5), paths)
    assert summary.rows == 3
    got = conn.execute(
        sql.SQL("SELECT id, label FROM {} ORDER BY id").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchall()
    assert got == [(1, "a"), (3, "c"), (5, "e")]
    as_text = pacsv.ConvertOptions(column_types={"line": pa.string(), "record": pa.string()})
    got_rejects = pacsv.read_csv(rejects, convert_options=as_text).to_pylist()
    assert sorted(r["record"] for r in got_rejects) == ["2,b,extra", "4"]
    assert all(
        r["file"] == str(tmp_path / "ragged.csv") and "fields where the header has 2" in r["error"]
        for r in got_rejects
    )


def test_corrupt_parquet_names_the_file(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    write_typed(tmp_path / "good.parquet", 1, 10, row_group_size=10)
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet at all")
    paths = (str(tmp_path / "*.parquet"),)
    with pytest.raises(TransferError, match=r"junk\.parquet is not a readable Parquet file"):
        run(dst_db, FileSource(FS, paths), paths)
    assert conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchone() == (0,)


class ListLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, event: Any, *args: Any) -> None:
        pass

    def warning(self, event: Any, *args: Any) -> None:
        self.warnings.append(event % args)


def test_empty_prefix_loads_nothing_with_a_warning_or_fails(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    (tmp_path / "empty").mkdir()
    paths = (str(tmp_path / "empty") + "/",)
    logger = ListLogger()
    summary = run(dst_db, FileSource(FS, paths, logger=logger), paths)
    assert summary.rows == 0
    assert any(str(tmp_path / "empty") in w and "no files" in w for w in logger.warnings)
    with pytest.raises(TransferConfigError, match="no files match"):
        run(dst_db, FileSource(FS, paths, allow_empty=False), paths)


def test_missing_file_is_named(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    create_typed(conn, dst_db.schema)
    paths = (str(tmp_path / "nope.parquet"),)
    with pytest.raises(TransferConfigError, match=r"source file .*nope\.parquet does not exist"):
        run(dst_db, FileSource(FS, paths), paths)


# -- resume ---------------------------------------------------------------------------------------


def _corrupt_row_group(path: Path, group: int) -> bytes:
    """Overwrites the page headers of one row group; returns the original bytes."""
    original = path.read_bytes()
    meta = pq.ParquetFile(path).metadata.row_group(group)
    data = bytearray(original)
    for c in range(meta.num_columns):
        col = meta.column(c)
        start = col.dictionary_page_offset or col.data_page_offset
        data[start : start + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    return original


def test_resume_after_a_corrupt_row_group_loads_every_row_once(dst_db: Any, tmp_path: Path) -> None:
    conn = dst_db.connect()
    conn.execute(
        sql.SQL("CREATE TABLE {} (id bigint, name text, day date)").format(sql.Identifier(dst_db.schema, "t"))
    )
    files = []
    for n in range(2):
        table = pa.table(
            {
                "id": pa.array(range(n * 1000, n * 1000 + 500), pa.int64()),
                "name": [f"row {i} of file {n}" for i in range(500)],
                "day": pa.array([date(2026, 1, 1 + i % 28) for i in range(500)], pa.date32()),
            }
        )
        pq.write_table(table, tmp_path / f"f{n}.parquet", row_group_size=100, use_dictionary=False)
        files.append(table)
    original = _corrupt_row_group(tmp_path / "f1.parquet", 2)
    paths = (str(tmp_path / "*.parquet"),)
    kwargs: dict[str, Any] = {"chunk_rows": 100, "checkpoint_id": "files-resume"}
    with pytest.raises(TransferError, match=r"f1\.parquet: row group 2 could not be read"):
        run(dst_db, FileSource(FS, paths), paths, **kwargs)
    count, _, _ = checksum(conn, dst_db.table("t"))
    assert 200 <= count < 1000  # file 1's first two row groups are in

    (tmp_path / "f1.parquet").write_bytes(original)
    summary = run(dst_db, FileSource(FS, paths), paths, **kwargs)
    assert summary.resumed_from is not None and "rg:2" in summary.resumed_from
    assert summary.rows_before_resume == count
    assert summary.rows == 1000 - count

    conn.execute(
        sql.SQL("CREATE TABLE {} (id bigint, name text, day date)").format(
            sql.Identifier(dst_db.schema, "want")
        )
    )
    with conn.cursor() as cur:
        for table in files:
            cur.executemany(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(sql.Identifier(dst_db.schema, "want")),
                [tuple(r.values()) for r in table.to_pylist()],
            )
    assert checksum(conn, dst_db.table("t")) == checksum(conn, dst_db.table("want"))
    assert checksum(conn, dst_db.table("t"))[:2] == (1000, 1000)


def test_resume_after_a_rejected_csv_row_in_the_second_file(dst_db: Any, tmp_path: Path) -> None:
    """The destination refuses a row of file 2 (CHECK); after fixing the table the rerun continues there."""
    conn = dst_db.connect()
    conn.execute(
        sql.SQL("CREATE TABLE {} (id integer, v integer CONSTRAINT small CHECK (v < 1000))").format(
            sql.Identifier(dst_db.schema, "t")
        )
    )
    for n in range(2):
        lines = ["id,v", *[f"{n * 100 + i},{5000 if (n, i) == (1, 57) else i}" for i in range(100)]]
        (tmp_path / f"p{n}.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    paths = (str(tmp_path) + "/",)
    kwargs: dict[str, Any] = {"chunk_rows": 20, "checkpoint_id": "csv-resume", "parallelism": 1}
    with pytest.raises(TransferError, match=r"p1\.csv\.gz records 41 to 60"):
        run(dst_db, FileSource(FS, paths), paths, **kwargs)
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT small").format(sql.Identifier(dst_db.schema, "t")))
    summary = run(dst_db, FileSource(FS, paths), paths, **kwargs)
    assert summary.rows_before_resume >= 40
    assert summary.rows + summary.rows_before_resume == 200
    got = conn.execute(
        sql.SQL("SELECT id, v FROM {} ORDER BY id").format(sql.Identifier(dst_db.schema, "t"))
    ).fetchall()
    assert got == [(n * 100 + i, 5000 if (n, i) == (1, 57) else i) for n in range(2) for i in range(100)]

"""PostgreSQL -> Parquet/CSV files against real PostgreSQL and real files: exact values, rotation, Hive
partitions, resume after a crash, nothing half-written under a final name."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any
from uuid import UUID

import fsspec
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from etl_platform.transfer import TransferConfigError
from etl_platform.transfer.export import ExportEngine, ExportSpec

FS = fsspec.filesystem("file")

SOURCE_DDL = """
CREATE TABLE {table} (
    id      bigint PRIMARY KEY,
    txt     text,
    num     numeric(38,10),
    big     bigint,
    small   smallint,
    i       integer,
    ts      timestamp,
    tstz    timestamptz,
    d       date,
    b       boolean,
    blob    bytea,
    f8      double precision,
    f4      real,
    free    numeric,
    js      jsonb,
    uid     uuid,
    grp     text
)
"""
COLUMNS = (
    "id",
    "txt",
    "num",
    "big",
    "small",
    "i",
    "ts",
    "tstz",
    "d",
    "b",
    "blob",
    "f8",
    "f4",
    "free",
    "js",
    "uid",
    "grp",
)

HOSTILE = [
    # id, txt, num, big, small, i, ts, tstz, d, b, blob, f8, f4, free, js, uid, grp
    (1, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
    (2, "", "9999999999999999999999999999.9999999999", 9223372036854775807, 32767, 2147483647,
     "2026-01-01 23:59:59.999999", "2026-06-30 12:00:00.000001+00", "2026-02-28", True, b"", "NaN", "NaN",
     "NaN", '{"a": [1, "x"]}', "00000000-0000-0000-0000-000000000001", "a"),
    (3, 'quote " and, comma', "-9999999999999999999999999999.9999999999", -9223372036854775808, -32768,
     -2147483648, "1970-01-01 00:00:00", "1999-12-31 23:59:59.123456-05", "1900-01-01", False, b"\x00\xff\x10",
     "Infinity", "Infinity", "-12345678901234567890.12345678901234567890", "[]", None, "b"),
    (4, "new\nline\r\nand \\ backslash \\N", "0.0000000001", 0, 0, 0, "2000-02-29 00:00:00.5",
     "2026-03-29 01:30:00+02", "2000-01-01", True, b"\\x00", "-Infinity", "-Infinity", "0", '{"k": null}',
     None, "x/y=z %"),
    (5, "emoji 🎉 and 𝄞, 日本語 ünïcødé", "-0.0000000001", -1, -1, -1, "2026-12-31 00:00:00",
     "2026-12-31 23:59:59.999999+00", "2026-12-31", None, b"\xde\xad\xbe\xef", "-0", "-0", "1e-20", '"s"',
     "ffffffff-ffff-ffff-ffff-ffffffffffff", None),
]  # fmt: skip
FILL = """
INSERT INTO {table}
SELECT g, 'row ' || g || CASE WHEN g %% 3 = 0 THEN ', with "quotes"' ELSE '' END,
       (g * 1234.5678901234)::numeric(38,10), g * 1000003, (g %% 30000)::smallint, (g * 7)::int,
       '2026-01-01'::timestamp + g * interval '1 second 1 microsecond',
       '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute 7 microseconds',
       '2026-01-01'::date + (g %% 365)::int, g %% 2 = 0, int8send(g), g / 7.0, (g / 3.0)::real,
       (g / 9.0)::numeric, jsonb_build_object('g', g), md5(g::text)::uuid, (ARRAY['a', 'b', 'c', NULL])[1 + g %% 4]
FROM generate_series(10::bigint, %s::bigint) AS g
"""


def create_source(conn: psycopg.Connection[Any], schema: str, rows: int) -> None:
    """`rows` rows: the hostile five (ids 1-5), then ids 10 to rows + 4."""
    table = sql.Identifier(schema, "src")
    conn.execute(sql.SQL(SOURCE_DDL).format(table=table))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES ({})").format(table, sql.SQL(", ").join([sql.Placeholder()] * 17)),
            HOSTILE,
        )
        cur.execute(sql.SQL(FILL).format(table=table), (rows + 4,))  # type: ignore[arg-type]


def comparable(name: str, value: Any) -> Any:
    """One form for psycopg's and pyarrow's value of a column."""
    if value is None:
        return None
    if name == "f4":  # real: psycopg reads the shortest text, pyarrow the float32 itself
        value = struct.unpack("f", struct.pack("f", value))[0]
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else (value, math.copysign(1, value))
    if name == "js":
        return json.loads(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def source_rows(
    conn: psycopg.Connection[Any], schema: str, columns: tuple[str, ...] = COLUMNS
) -> list[tuple[Any, ...]]:
    # Unconstrained numeric and jsonb are exported as their PostgreSQL text.
    selected = [
        sql.SQL("{}::text" if c in ("free", "js") else "{}").format(sql.Identifier(c)) for c in columns
    ]
    rows = conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(selected), sql.Identifier(schema, "src")
        )
    ).fetchall()
    return [tuple(comparable(c, v) for c, v in zip(columns, row, strict=True)) for row in rows]


def file_rows(table: pa.Table, columns: tuple[str, ...] = COLUMNS) -> list[tuple[Any, ...]]:
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    return [tuple(comparable(c, r[c]) for c in columns) for r in rows]


def export(src_db: Any, out: Path, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("source_table", src_db.table("src"))
    engine_kwargs = {k: kwargs.pop(k) for k in ("on_published",) if k in kwargs}
    spec = ExportSpec(destination=str(out), **kwargs)
    return ExportEngine(spec, lambda: psycopg.connect(src_db.conninfo), FS, **engine_kwargs).run()


def visible(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_parquet_round_trip_is_exact(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=3005)
    out = tmp_path / "out"
    summary = export(src_db, out, chunk_rows=700)
    assert summary["rows"] == 3005
    assert summary["files"] == ["part-00000.parquet"]
    assert visible(out) == ["_SUCCESS", "_etl_export_checkpoint.json", "part-00000.parquet"]
    table = pq.read_table(out / "part-00000.parquet")
    assert table.column_names == list(COLUMNS)
    assert table.schema.field("num").type == pa.decimal128(38, 10)
    assert table.schema.field("tstz").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("blob").type == pa.binary()
    assert table.schema.field("free").type == pa.string()
    assert file_rows(table) == source_rows(conn, src_db.schema)


def test_rotation_gives_ceil_rows_over_n_files(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=1000)
    out = tmp_path / "out"
    summary = export(src_db, out, rows_per_file=300, chunk_rows=128)
    assert summary["files"] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert [pq.read_metadata(out / f).num_rows for f in summary["files"]] == [300, 300, 300, 100]
    assert file_rows(ds.dataset(out, format="parquet").to_table()) == source_rows(conn, src_db.schema)


def test_hive_partitions_read_back_the_same_rows(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=1200)
    out = tmp_path / "out"
    summary = export(src_db, out, partition_by="grp", rows_per_file=200, chunk_rows=250)
    dirs = sorted({f.split("/")[0] for f in summary["files"]})
    assert dirs == ["grp=__HIVE_DEFAULT_PARTITION__", "grp=a", "grp=b", "grp=c", "grp=x%2Fy%3Dz%20%25"]
    for name in summary["files"]:
        assert "grp" not in pq.read_schema(out / name).names
        assert pq.read_metadata(out / name).num_rows <= 200
    partitioning = ds.partitioning(pa.schema([("grp", pa.string())]), flavor="hive")
    table = ds.dataset(out, format="parquet", partitioning=partitioning).to_table()
    assert file_rows(table) == source_rows(conn, src_db.schema)


class Crash(Exception):
    pass


def crash_after(count: int, seen: list[str], out: Path) -> Any:
    """An on_published hook: checks that every visible file is whole, and fails after `count` files."""

    def hook(name: str) -> None:
        seen.append(name)
        for relative in visible(out):
            if not relative.startswith("_"):
                assert pq.read_metadata(out / relative).num_rows > 0  # complete, readable
        if len(seen) == count:
            raise Crash(f"stopped after {name}")

    return hook


@pytest.mark.parametrize(("partition_by", "crash_at"), [(None, 2), ("grp", 2), ("grp", 7)])
def test_resume_after_a_crash_exports_every_row_once(
    src_db: Any, tmp_path: Path, partition_by: str | None, crash_at: int
) -> None:
    """A crash after a published file: within the first commit, or (partitioned, 7) inside a later one."""
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=1500)
    out = tmp_path / "out"
    kwargs: dict[str, Any] = {"rows_per_file": 200, "chunk_rows": 150, "partition_by": partition_by}
    seen: list[str] = []
    with pytest.raises(Crash):
        export(src_db, out, on_published=crash_after(crash_at, seen, out), **kwargs)
    manifest = json.loads((out / "_etl_export_checkpoint.json").read_text())
    assert not manifest["finished"]
    assert not (out / "_SUCCESS").exists()

    summary = export(src_db, out, **kwargs)
    assert summary["resumed_from"] == manifest["last_key"]
    assert summary["rows"] == 1500 - manifest["rows"]
    files = visible(out)
    assert [f for f in files if f.startswith("_")] == ["_SUCCESS", "_etl_export_checkpoint.json"]  # no _tmp/
    assert sorted(summary["files"]) == [f for f in files if not f.startswith("_")]
    partitioning = ds.partitioning(pa.schema([("grp", pa.string())]), flavor="hive") if partition_by else None
    table = ds.dataset(out, format="parquet", partitioning=partitioning).to_table()
    assert table.num_rows == 1500
    assert file_rows(table) == source_rows(conn, src_db.schema)

    again = export(src_db, out, **kwargs)
    assert again["resumed_from"] == "finished" and again["rows"] == 0 and again["files"] == summary["files"]


def test_query_source_with_key_column(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=500)
    out = tmp_path / "out"
    query = f"SELECT txt, id, (num * 2)::numeric(40,10) AS twice, tstz FROM {src_db.table('src')} WHERE id % 2 = 0"
    summary = export(src_db, out, source_table=None, source_sql=query, key_column="id", chunk_rows=60)
    assert summary["rows"] == 2 + 248  # ids 2, 4 and the even ids from 10 to 504
    table = pq.read_table(out / "part-00000.parquet")
    assert table.column_names == ["id", "txt", "twice", "tstz"]  # the key first
    assert table.schema.field("twice").type == pa.decimal256(40, 10)
    want = conn.execute(
        sql.SQL("SELECT id, txt, twice, tstz FROM ({}) q ORDER BY id").format(sql.SQL(query))
    ).fetchall()  # type: ignore[arg-type]
    assert [tuple(r.values()) for r in table.to_pylist()] == [tuple(r) for r in want]


def test_csv_export_gzip(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=200)
    out = tmp_path / "out"
    summary = export(src_db, out, file_format="csv", compression="gzip", rows_per_file=150)
    assert summary["files"] == ["part-00000.csv.gz", "part-00001.csv.gz"]
    columns = ("id", "txt", "big", "blob", "free")
    types = {
        "id": pa.int64(),
        "txt": pa.string(),
        "big": pa.int64(),
        "blob": pa.string(),
        "free": pa.string(),
    }
    tables = [
        pacsv.read_csv(
            out / f,
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=list(columns),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )
        for f in summary["files"]
    ]
    got = [tuple(r.values()) for t in tables for r in t.to_pylist()]
    want = conn.execute(
        sql.SQL("SELECT id, txt, big, blob::text, free::text FROM {} ORDER BY id").format(
            sql.Identifier(src_db.schema, "src")
        )
    ).fetchall()
    assert got == [tuple(r) for r in want]


def test_refuses_a_non_empty_destination_without_checkpoint(src_db: Any, tmp_path: Path) -> None:
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=10)
    out = tmp_path / "out"
    out.mkdir()
    (out / "someone_elses.parquet").write_bytes(b"x")
    with pytest.raises(TransferConfigError, match=r"is not empty .*someone_elses\.parquet"):
        export(src_db, out)
    with pytest.raises(TransferConfigError, match="partition_by 'nope' is not a column"):
        export(src_db, tmp_path / "other", partition_by="nope")


def test_s3_export_then_load_back(src_db: Any, dst_db: Any, s3_bucket: Any) -> None:
    """Both directions through s3fs (moto): Hive partitions out, a glob over them back into PostgreSQL."""
    from etl_platform.transfer import TransferEngine, TransferSpec
    from etl_platform.transfer.sources.files import FileSource

    s3 = fsspec.filesystem(
        "s3",
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": s3_bucket.server.endpoint_url, "region_name": "us-east-1"},
    )
    conn = src_db.connect()
    create_source(conn, src_db.schema, rows=700)
    out = s3_bucket.url("orders/")
    spec = ExportSpec(
        destination=out, source_table=src_db.table("src"), partition_by="grp", rows_per_file=100
    )
    summary = ExportEngine(spec, lambda: psycopg.connect(src_db.conninfo), s3).run()
    assert summary["rows"] == 700
    assert s3.exists(s3_bucket.url("orders/_SUCCESS"))
    assert not s3.exists(s3_bucket.url("orders/_tmp"))

    dst = dst_db.connect()
    dst.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, txt text, num numeric(38,10), tstz timestamptz, blob bytea)"
        ).format(sql.Identifier(dst_db.schema, "t"))
    )
    paths = (s3_bucket.url("orders/grp=a/*.parquet"), s3_bucket.url("orders/grp=b/"))
    load = TransferEngine(
        TransferSpec(destination_table=dst_db.table("t"), source_path=paths, checkpoint_schema=dst_db.schema),
        FileSource(s3, paths),
        lambda: psycopg.connect(dst_db.conninfo),
    )
    # The files carry every column but grp; the destination takes five: the load names the others.
    with pytest.raises(TransferConfigError, match=r"source columns \['big'"):
        load.run()
    dst.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(dst_db.schema, "t")))
    dst.execute(sql.SQL(SOURCE_DDL).format(table=sql.Identifier(dst_db.schema, "t")))  # type: ignore[arg-type]
    dst.execute(sql.SQL("ALTER TABLE {} DROP COLUMN grp").format(sql.Identifier(dst_db.schema, "t")))
    loaded = load.run()
    columns = tuple(c for c in COLUMNS if c != "grp")
    want = [
        r
        for r, g in zip(
            source_rows(conn, src_db.schema, columns), source_rows(conn, src_db.schema, ("grp",)), strict=True
        )
        if g[0] in ("a", "b")
    ]
    assert loaded.rows == len(want) > 300
    selected = [
        sql.SQL("{}::text" if c in ("free", "js") else "{}").format(sql.Identifier(c)) for c in columns
    ]
    got = dst.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(selected), sql.Identifier(dst_db.schema, "t")
        )
    ).fetchall()
    assert [tuple(comparable(c, v) for c, v in zip(columns, row, strict=True)) for row in got] == want

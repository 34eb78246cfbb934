"""KeyReader against rows PostgreSQL's COPY really sends: the key it reads is the row's key.

The engine resumes and chunks with `key > <the key read>` (an untyped literal): so for every COPY
format and key type, the key read from a row must select that very row back, and none before it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer.keys import BINARY_SIGNATURE, KeyReader, csv_first_field
from harness import SchemaDb

FORMATS = ("binary", "text", "csv")
# key type -> values, ordered as PostgreSQL orders them; the text ones hold what COPY escapes or quotes
KEYS: dict[str, list[str]] = {
    "integer": ["-5", "0", "7", "2147483647"],
    "bigint": ["-9223372036854775808", "1", "9223372036854775807"],
    "numeric": ["-1.50", "0", "3.14159265358979323846"],
    "text": ["a,b", 'say "hi"', "tab\there", "back\\slash", "line\nbreak", "plain", "ünï"],
    "uuid": ["00000000-0000-0000-0000-000000000001", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "date": ["1999-12-31", "2026-02-28"],
    "timestamp": ["2026-01-01 00:00:00", "2026-01-01 10:30:00.123456"],
    "timestamptz": ["2026-01-01 00:00:00+00", "2026-06-30 23:59:59.5+02"],
}


def _table(conn: psycopg.Connection[Any], db: SchemaDb, key_type: str, values: list[str]) -> sql.Composed:
    table = sql.Identifier(db.schema, "keyed")
    conn.execute(sql.SQL("CREATE TABLE {} (k {} PRIMARY KEY, note text)").format(table, sql.SQL(key_type)))
    with conn.cursor().copy(sql.SQL("COPY {} (k, note) FROM STDIN").format(table)) as copy:
        for value in values:
            copy.write_row((value, "x"))
    return table


def _copy_rows(conn: psycopg.Connection[Any], table: sql.Composed, copy_format: str) -> list[bytes]:
    """The CopyData messages of the table in key order: one per row (the first carries a binary header)."""
    query = sql.SQL("COPY (SELECT k, note FROM {} ORDER BY k) TO STDOUT (FORMAT {})").format(
        table, sql.SQL(copy_format.upper())
    )
    with conn.cursor().copy(query) as copy:
        messages = [bytes(data) for data in copy]
    if copy_format == "binary":
        assert messages[0].startswith(BINARY_SIGNATURE)
        assert messages[-1] == b"\xff\xff"  # the trailer: not a row
        messages = messages[:-1]
    return messages


@pytest.mark.parametrize("copy_format", FORMATS)
@pytest.mark.parametrize("key_type", sorted(KEYS))
def test_key_read_from_each_row_selects_that_row(src_db: SchemaDb, key_type: str, copy_format: str) -> None:
    with psycopg.connect(src_db.conninfo, autocommit=True) as conn:
        conn.execute(
            "SET TIME ZONE 'Europe/Berlin'"
        )  # a zoned key keeps its instant whatever the session zone
        table = _table(conn, src_db, key_type, KEYS[key_type])
        rows = _copy_rows(conn, table, copy_format)
        oid_row = conn.execute("SELECT %s::regtype::oid", (key_type,)).fetchone()
        assert oid_row is not None
        reader = KeyReader(conn, oid_row[0], copy_format)
        ordered = [
            r[0] for r in conn.execute(sql.SQL("SELECT k::text AS shown FROM {} ORDER BY k").format(table))
        ]
        assert len(rows) == len(ordered) == len(KEYS[key_type])
        for position, row in enumerate(rows):
            key = reader.key_of(row)
            assert isinstance(key, str)
            same = conn.execute(
                sql.SQL("SELECT k::text FROM {} WHERE k = {}").format(table, sql.Literal(key))
            ).fetchall()
            assert same == [(ordered[position],)], (key_type, copy_format, key)
            after = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE k > {}").format(table, sql.Literal(key))
            ).fetchone()
            assert after == (len(rows) - position - 1,)
            if key_type in ("integer", "bigint", "text"):  # exactly what key::text prints
                assert key == ordered[position]


@pytest.mark.parametrize("copy_format", FORMATS)
def test_a_null_key_is_refused(src_db: SchemaDb, copy_format: str) -> None:
    """A NULL key cannot be resumed after: the read fails instead of checkpointing nonsense."""
    with psycopg.connect(src_db.conninfo, autocommit=True) as conn:
        query = sql.SQL("COPY (SELECT NULL::integer, 'x'::text) TO STDOUT (FORMAT {})").format(
            sql.SQL(copy_format.upper())
        )
        with conn.cursor().copy(query) as copy:
            messages = [bytes(data) for data in copy]  # read to the end: the COPY must finish
        row = messages[0]
        reader = KeyReader(conn, 23, copy_format)
        with pytest.raises(ValueError, match="NULL key in source row"):
            reader.key_of(row)


def test_binary_reader_needs_a_binary_loader(src_db: SchemaDb) -> None:
    with psycopg.connect(src_db.conninfo) as conn:
        with pytest.raises(ValueError, match="no binary loader for key type oid"):
            KeyReader(conn, 4_000_000_000, "binary")
        assert KeyReader(conn, 4_000_000_000, "text").key_of(b"k1\tv\n") == "k1"


@pytest.mark.parametrize(
    ("row", "key"),
    [
        (b"17,rest\n", "17"),
        (b"17\n", "17"),
        (b"17\r\n", "17"),
        (b'"a,b",rest\n', "a,b"),
        (b'"say ""hi""",x\n', 'say "hi"'),
        (b'"line\nbreak",x\n', "line\nbreak"),
        (b'"",x\n', ""),  # an empty string is quoted: not NULL
    ],
)
def test_csv_first_field(row: bytes, key: str) -> None:
    assert csv_first_field(row) == key


def test_csv_unquoted_empty_first_field_is_null() -> None:
    with pytest.raises(ValueError, match="NULL key"):
        csv_first_field(b",x\n")

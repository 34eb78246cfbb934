"""MariaDB as a transfer source, against a real MariaDB and a real PostgreSQL: every value at its limits
compared on both ends, refusals before data moves, write modes, snapshots under concurrent writers,
resume after SIGKILL, and an unreachable server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from etl_devstack.mariadb import MySqlServer, start_private_mariadbd
from etl_platform.transfer import ChunkLoadError, TransferConfigError, TransferError
from harness.mysqldb import create_my_db, drop_my_db
from tests.mysql_fixtures import (
    BalanceWriters,
    connect_kwargs,
    my_exec,
    my_factory,
    my_rows,
    pg_exec,
    pg_rows,
    transfer,
)

# -- 1. types, value by value -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One column: MariaDB type, PostgreSQL type, SQL literals to insert, how to read each end."""

    my_type: str
    pg_type: str
    values: tuple[str, ...]
    expected: tuple[Any, ...] | None = None  # what both ends must hold (after normalising), row by row
    my_expr: str = "v"
    pg_expr: str = "v"
    my_norm: Callable[[Any], Any] = field(default=lambda v: v)
    pg_norm: Callable[[Any], Any] = field(default=lambda v: v)


def _f32(value: float | None) -> bytes | None:
    return None if value is None else struct.pack(">f", value)


def _f64(value: float | None) -> bytes | None:
    return None if value is None else struct.pack(">d", value)


def _bits(value: bytes | None) -> int | None:
    return None if value is None else int.from_bytes(value, "big")


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


_INTS = {
    # MariaDB type: (min, max, PostgreSQL type that holds every value)
    "TINYINT": (-128, 127, "smallint"),
    "TINYINT UNSIGNED": (0, 255, "smallint"),
    "SMALLINT": (-32768, 32767, "smallint"),
    "SMALLINT UNSIGNED": (0, 65535, "integer"),
    "MEDIUMINT": (-8388608, 8388607, "integer"),
    "MEDIUMINT UNSIGNED": (0, 16777215, "integer"),
    "INT": (-2147483648, 2147483647, "integer"),
    "INT UNSIGNED": (0, 4294967295, "bigint"),
    "BIGINT": (-9223372036854775808, 9223372036854775807, "bigint"),
    "BIGINT UNSIGNED": (0, 18446744073709551615, "numeric(20,0)"),
}
_DEC_MAX = "99999999999999999999999999999999999.999999999999999999999999999999"
_DEC_TINY = "0.000000000000000000000000000001"
_TEXTS = (
    "'plain'",
    "''",  # an empty string stays one; NULL (the last row of every case) stays NULL
    "'emoji 😀 and clef 𝄞'",
    '\'quotes \\\' and "double" and ""\'',
    "'comma, comma,'",
    "'new\\nline'",
    "'carriage\\rreturn\\r\\n'",
    "'tab\\there'",
    "'back\\\\slash \\\\N \\\\.'",
    "'\\\\.'",
    "' leading and trailing '",
)

CASES: dict[str, Case] = {
    **{
        f"int-{my.lower().replace(' ', '-')}": Case(my, pg, (str(lo), str(hi), "0"), (lo, hi, 0))
        for my, (lo, hi, pg) in _INTS.items()
    },
    "bigint-unsigned-into-unconstrained-numeric": Case(
        "BIGINT UNSIGNED", "numeric", ("18446744073709551615",), (18446744073709551615,)
    ),
    "decimal-65-30": Case(
        "DECIMAL(65,30)",
        "numeric(65,30)",
        (_DEC_MAX, "-" + _DEC_MAX, _DEC_TINY, "-" + _DEC_TINY, "0", "1.5"),
        my_norm=str,
        pg_norm=str,
    ),
    "decimal-65-30-into-unconstrained-numeric": Case(
        "DECIMAL(65,30)",
        "numeric",
        (_DEC_MAX, "-" + _DEC_MAX, _DEC_TINY, "-" + _DEC_TINY, "0"),
        my_norm=str,
        pg_norm=str,
    ),
    # MariaDB's FLOAT tops out at 3.402823466e38 (its own range check refuses 3.4028235e38, which is
    # FLT_MAX rounded up): that literal is FLT_MAX as a float32. Read exactly on both ends: MariaDB
    # widened to DOUBLE (FLOAT itself prints 6 digits), PostgreSQL through float4send.
    "float-into-real": Case(
        "FLOAT",
        "real",
        ("3.402823466e38", "-3.402823466e38", "1.17549435e-38", "0.1", "-0.0e0", "16777217"),
        tuple(_f32(v) for v in (3.402823466e38, -3.402823466e38, 1.17549435e-38, 0.1, 0.0, 16777216.0)),
        my_expr="CAST(v AS DOUBLE)",
        pg_expr="float4send(v)",
        my_norm=_f32,
        pg_norm=_bytes,
    ),
    "double-into-double-precision": Case(
        "DOUBLE",
        "double precision",
        ("1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "0.1e0+0.2e0", "-0e0", "0.1"),
        tuple(
            _f64(v) for v in (1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.1 + 0.2, 0.0, 0.1)
        ),
        pg_expr="float8send(v)",
        my_norm=_f64,
        pg_norm=_bytes,
    ),
    "bit1-into-bit1": Case(
        "BIT(1)", "bit(1)", ("b'0'", "b'1'"), ("0", "1"), my_norm=lambda v: v and format(_bits(v), "01b")
    ),
    "bit10-into-bit10": Case(
        "BIT(10)",
        "bit(10)",
        ("b'0'", "b'1111111111'", "b'1000000001'"),
        ("0000000000", "1111111111", "1000000001"),
        my_norm=lambda v: v and format(_bits(v), "010b"),
        pg_expr="v::text",
    ),
    "bit10-into-varbit": Case(
        "BIT(10)",
        "bit varying",
        ("b'0'", "b'1111111111'", "b'0000000001'"),
        ("0000000000", "1111111111", "0000000001"),
        my_norm=lambda v: v and format(_bits(v), "010b"),
        pg_expr="v::text",
    ),
    "bit64-into-bit64": Case(
        "BIT(64)",
        "bit(64)",
        ("b'0'", "0xFFFFFFFFFFFFFFFF", "0x8000000000000001"),
        ("0" * 64, "1" * 64, "1" + "0" * 62 + "1"),
        my_norm=lambda v: v and format(_bits(v), "064b"),
        pg_expr="v::text",
    ),
    "bit63-into-bigint": Case(
        "BIT(63)", "bigint", ("b'0'", "0x7FFFFFFFFFFFFFFF", "b'101'"), (0, 2**63 - 1, 5), my_norm=_bits
    ),
    "bit1-into-bigint": Case("BIT(1)", "bigint", ("b'0'", "b'1'"), (0, 1), my_norm=_bits),
    "tinyint1-into-boolean": Case("TINYINT(1)", "boolean", ("0", "1"), (False, True), my_norm=bool),
    "date": Case("DATE", "date", ("'1000-01-01'", "'9999-12-31'", "'2024-02-29'"), my_norm=str, pg_norm=str),
    "datetime6-into-timestamp": Case(
        "DATETIME(6)",
        "timestamp",
        ("'1000-01-01 00:00:00.000000'", "'9999-12-31 23:59:59.999999'", "'2024-02-29 12:34:56.000001'"),
        ("1000-01-01 00:00:00", "9999-12-31 23:59:59.999999", "2024-02-29 12:34:56.000001"),
        my_norm=str,
        pg_norm=str,
    ),
    "time-into-interval": Case(
        "TIME(6)",
        "interval",
        ("'-838:59:59'", "'838:59:59.000000'", "'25:00:00'", "'-00:00:00.000001'", "'00:00:00'"),
    ),
    "year-into-smallint": Case("YEAR", "smallint", ("1901", "2155", "'0000'"), (1901, 2155, 0)),
    "utf8mb4-text": Case("TEXT CHARACTER SET utf8mb4", "text", _TEXTS),
    "utf8mb4-varchar-key-order-into-varchar": Case(
        "VARCHAR(100) CHARACTER SET utf8mb4", "varchar(100)", _TEXTS
    ),
    "latin1-varchar": Case(
        "VARCHAR(20) CHARACTER SET latin1",
        "text",
        ("'é'", "'ñ'", "'¿'", "'café, niño ¿sí?'"),
        ("é", "ñ", "¿", "café, niño ¿sí?"),
    ),
    "enum": Case("ENUM('a','b','c,d')", "text", ("'a'", "'c,d'"), ("a", "c,d")),
    "set": Case("SET('a','b','c')", "text", ("'a,c'", "''", "'c,b,a'"), ("a,c", "", "a,b,c")),
    "json-into-jsonb": Case(
        "JSON",
        "jsonb",
        (
            """'{"a": [1, 2.5, "x\\\\"y", null], "é": {"emoji": "😀"}}'""",
            "'[]'",
            """'"text, with comma"'""",
            "'12345678901234567890'",
        ),
        my_norm=_json,
    ),
    "blob-into-bytea": Case(
        "BLOB",
        "bytea",
        ("0x00FF", "''", "0x00", "0xFF00FF", "'a\\\\b,\"c'"),
        (b"\x00\xff", b"", b"\x00", b"\xff\x00\xff", b'a\\b,"c'),
        my_norm=_bytes,
        pg_norm=_bytes,
    ),
    "binary4-into-bytea": Case(
        "BINARY(4)",
        "bytea",
        ("0x00", "0xFFFFFFFF", "'a'"),
        (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"a\x00\x00\x00"),  # right-padded with 0x00
        my_norm=_bytes,
        pg_norm=_bytes,
    ),
    "varbinary-into-bytea": Case(
        "VARBINARY(8)",
        "bytea",
        ("0x0000", "0xFF", "''"),
        (b"\x00\x00", b"\xff", b""),
        my_norm=_bytes,
        pg_norm=_bytes,
    ),
}


def _norm(norm: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else norm(value)


def _load_case(my_db: Any, dst_db: Any, case: Case, **kwargs: Any) -> None:
    rows = ", ".join(f"({i}, {v})" for i, v in enumerate((*case.values, "NULL"), start=1))
    my_exec(
        my_db,
        f"CREATE TABLE t (id INT PRIMARY KEY, v {case.my_type}) ENGINE=InnoDB",
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
    )
    my_exec(my_db, "SET SESSION sql_mode = 'STRICT_ALL_TABLES'", f"INSERT INTO t VALUES {rows}")
    pg_exec(dst_db, f"CREATE TABLE t (id integer PRIMARY KEY, v {case.pg_type})")
    transfer(my_db, dst_db, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_type_limits_arrive_exactly(my_db: Any, dst_db: Any, name: str) -> None:
    case = CASES[name]
    _load_case(my_db, dst_db, case, chunk_rows=3)
    mine = [
        (i, _norm(case.my_norm, v))
        for i, v in my_rows(my_db, f"SELECT id, {case.my_expr} FROM t ORDER BY id")
    ]
    theirs = [
        (i, _norm(case.pg_norm, v))
        for i, v in pg_rows(dst_db, f"SELECT id, {case.pg_expr} FROM t ORDER BY id")
    ]
    assert len(mine) == len(case.values) + 1
    assert theirs == mine
    assert theirs[-1] == (len(case.values) + 1, None)  # NULL stays NULL
    if case.expected is not None:
        assert [v for _, v in theirs[:-1]] == list(case.expected)


@pytest.mark.parametrize(
    "sql_mode",
    [
        "NO_BACKSLASH_ESCAPES",
        "EMPTY_STRING_IS_NULL",
        "ORACLE",
        "PAD_CHAR_TO_FULL_LENGTH",
        "ANSI",
        "TRADITIONAL",
    ],
)
def test_session_sql_mode_does_not_change_values(my_db: Any, dst_db: Any, sql_mode: str) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id VARCHAR(20) PRIMARY KEY, s TEXT, c CHAR(5), b BLOB, n INT)",
        "INSERT INTO t VALUES ('a\\\\b', 'x\\\\y', 'ab', 0x00FF5C, NULL), ('a''b', '', '', '', 1), "
        "('c\"d', NULL, NULL, NULL, 2)",
    )
    pg_exec(dst_db, "CREATE TABLE t (id text PRIMARY KEY, s text, c text, b bytea, n integer)")
    factory = my_factory(my_db, init_command=f"SET SESSION sql_mode = '{sql_mode}'")
    transfer(my_db, dst_db, factory=factory, chunk_rows=1)
    mine = my_rows(my_db, "SELECT id, s, c, b, n FROM t ORDER BY id")
    theirs = pg_rows(dst_db, 'SELECT id, s, c, b, n FROM t ORDER BY id COLLATE "C"')
    assert [(i, s, c, _bytes(b), n) for i, s, c, b, n in theirs] == [
        (i, s, c, _bytes(b), n) for i, s, c, b, n in mine
    ]
    assert theirs[0] == ("a'b", "", "", b"", 1)


def test_timestamp_arrives_as_utc_whatever_the_session_zone(my_db: Any, dst_db: Any) -> None:
    # Inserted from a +05:30 session: the TIMESTAMP limits, 1970-01-01 00:00:01 and 2038-01-19 03:14:07.999999 UTC.
    my_exec(
        my_db,
        "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, dt DATETIME(6))",
        "SET time_zone = '+05:30'",
        "INSERT INTO t VALUES (1, '1970-01-01 05:30:01.000000', '1970-01-01 05:30:01'), "
        "(2, '2038-01-19 08:44:07.999999', '2038-01-19 08:44:07.999999'), (3, NULL, NULL)",
    )
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, ts timestamptz, dt timestamp)")
    # The factory's sessions start at +05:30 as well (what a server default would do): the source pins UTC.
    factory = my_factory(my_db, init_command="SET time_zone = '+05:30'")
    transfer(my_db, dst_db, factory=factory, chunk_rows=1)
    utc = my_rows(my_db, "SELECT id, ts, dt FROM t ORDER BY id", "SET time_zone = '+00:00'")
    assert utc == [
        (1, datetime(1970, 1, 1, 0, 0, 1), datetime(1970, 1, 1, 5, 30, 1)),
        (2, datetime(2038, 1, 19, 3, 14, 7, 999999), datetime(2038, 1, 19, 8, 44, 7, 999999)),
        (3, None, None),
    ]
    theirs = pg_rows(dst_db, "SELECT id, ts, dt FROM t ORDER BY id")
    assert theirs == [(i, ts and ts.replace(tzinfo=UTC), dt) for i, ts, dt in utc]


@pytest.fixture(scope="module")
def skewed_server() -> Iterator[MySqlServer]:
    """A private mariadbd whose global defaults differ from what the source needs: time_zone +05:30 and
    an sql_mode with NO_BACKSLASH_ESCAPES (changing a shared server's globals would disturb its other
    clients)."""
    server = start_private_mariadbd()
    try:
        conn = server.connect()
        try:
            conn.cursor().execute("SET GLOBAL time_zone = '+05:30'")
            conn.cursor().execute("SET GLOBAL sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES'")
        finally:
            conn.close()
        yield server
    finally:
        server.stop()


def test_server_defaults_do_not_change_values(skewed_server: MySqlServer, dst_db: Any) -> None:
    db = create_my_db(skewed_server, "skewed")
    try:
        # Written in the server's own defaults: +05:30, and a backslash is just a character.
        my_exec(
            db,
            "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, b BLOB, s TEXT)",
            "INSERT INTO t VALUES (1, '1970-01-01 05:30:01', '', 'a\\b'), "
            "(2, '2038-01-19 08:44:07.999999', 0x00FF, ''), (3, NULL, NULL, NULL)",
        )
        assert my_rows(db, "SELECT @@SESSION.time_zone, LENGTH(s) FROM t WHERE id = 1") == [("+05:30", 3)]
        pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, ts timestamptz, b bytea, s text)")
        transfer(db, dst_db, chunk_rows=2)
        assert pg_rows(dst_db, "SELECT id, ts, b, s FROM t ORDER BY id") == [
            (1, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), b"", "a\\b"),
            (2, datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC), b"\x00\xff", ""),
            (3, None, None, None),
        ]
    finally:
        drop_my_db(db)


def test_a_read_only_user_gets_per_stream_snapshots_and_a_clear_source_sql_message(
    skewed_server: MySqlServer, dst_db: Any
) -> None:
    db = create_my_db(skewed_server, "readonly")
    user = f"ro_{db.database[-8:]}"
    try:
        my_exec(
            db,
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
            "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30), (4, 40)",
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 'ro-pass'",
            f"GRANT SELECT ON `{db.database}`.* TO '{user}'@'%'",
        )
        pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, v integer)")
        factory = my_factory(db, user=user, password="ro-pass")
        # No RELOAD/LOCK TABLES: the streams cannot start at one instant, and the summary says so.
        summary = transfer(db, dst_db, factory=factory, chunk_rows=1, parallelism=3)
        assert summary.consistency.startswith("3 snapshots, one per stream"), summary.consistency
        assert pg_rows(dst_db, "SELECT id, v FROM t ORDER BY id") == [(1, 10), (2, 20), (3, 30), (4, 40)]
        with pytest.raises(TransferConfigError, match="needs the CREATE TEMPORARY TABLES privilege"):
            transfer(db, dst_db, factory=factory, source_sql="SELECT id, v FROM t", key_column="id")
    finally:
        my_exec(db, f"DROP USER IF EXISTS '{user}'@'%'")
        drop_my_db(db)


_ZERO_ROWS = (
    "(1, '2020-01-02', '2020-01-02 03:04:05', '2020-01-02 03:04:05'), "
    "(2, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'), "
    "(3, '2020-00-15', '2020-01-02 00:00:00', '2020-01-02 00:00:00'), "
    "(4, '2021-03-04', '2021-03-04 05:06:07', '2021-03-04 05:06:07'), "
    "(5, '2020-05-00', '0000-01-01 00:00:00', '2021-03-04 05:06:07')"
)


def _zero_dates_table(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "SET SESSION sql_mode = ''",
        "CREATE TABLE t (id INT PRIMARY KEY, d DATE, dt DATETIME, ts TIMESTAMP NULL DEFAULT NULL)",
        f"INSERT INTO t VALUES {_ZERO_ROWS}",
    )
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, d date, dt timestamp, ts timestamptz)")


@pytest.mark.parametrize("session_mode", ["", "TRADITIONAL"])
def test_zero_dates_become_null_when_asked(my_db: Any, dst_db: Any, session_mode: str) -> None:
    _zero_dates_table(my_db, dst_db)
    factory = my_factory(my_db, init_command=f"SET SESSION sql_mode = '{session_mode}'")
    transfer(my_db, dst_db, factory=factory, zero_dates="null", chunk_rows=2)
    assert pg_rows(dst_db, "SELECT id, d::text, dt::text, ts::text FROM t ORDER BY id") == [
        (1, "2020-01-02", "2020-01-02 03:04:05", "2020-01-02 03:04:05+00"),
        (2, None, None, None),
        (3, None, "2020-01-02 00:00:00", "2020-01-02 00:00:00+00"),
        (4, "2021-03-04", "2021-03-04 05:06:07", "2021-03-04 05:06:07+00"),
        (5, None, None, "2021-03-04 05:06:07+00"),
    ]


def test_zero_dates_fail_the_chunk_by_default_and_never_land_as_another_date(my_db: Any, dst_db: Any) -> None:
    _zero_dates_table(my_db, dst_db)
    with pytest.raises(ChunkLoadError) as failed:
        transfer(my_db, dst_db, zero_dates="error", chunk_rows=1)
    message = str(failed.value)
    assert 'column d: "0000-00-00"' in message and "id in (1, 2]" in message, message
    # Only the chunk before it landed, exactly; nothing past it.
    assert pg_rows(dst_db, "SELECT id, d::text, dt::text FROM t") == [
        (1, "2020-01-02", "2020-01-02 03:04:05")
    ]
    # Each other zero-date form fails as well (never lands as some other date).
    for key, column, value in ((3, "d", "2020-00-15"), (5, "d", "2020-05-00")):
        my_exec(my_db, f"DELETE FROM t WHERE id < {key}")
        pg_exec(dst_db, "TRUNCATE t")
        with pytest.raises(ChunkLoadError, match=f'column {column}: "{value}"'):
            transfer(my_db, dst_db, zero_dates="error", chunk_rows=1)
        assert pg_rows(dst_db, "SELECT count(*) FROM t") == [(0,)]
    my_exec(my_db, "UPDATE t SET d = '2021-01-01' WHERE id = 5")
    with pytest.raises(ChunkLoadError, match='column dt: "0000-01-01 00:00:00"'):
        transfer(my_db, dst_db, zero_dates="error", chunk_rows=1)


def test_tinyint1_other_than_0_or_1_fails_into_boolean(my_db: Any, dst_db: Any) -> None:
    my_exec(my_db, "CREATE TABLE t (id INT PRIMARY KEY, v TINYINT(1))", "INSERT INTO t VALUES (1, 1), (2, 2)")
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, v boolean)")
    with pytest.raises(ChunkLoadError) as failed:
        transfer(my_db, dst_db, chunk_rows=10)
    assert 'invalid input syntax for type boolean: "2"' in str(failed.value)
    assert "column v" in str(failed.value)
    assert pg_rows(dst_db, "SELECT count(*) FROM t") == [(0,)]


def test_generated_columns_are_read_like_any_other(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL, "
        "s VARCHAR(30) AS (CONCAT('x,', a, '\"')) STORED)",
        "INSERT INTO t (id, a) VALUES (1, 10), (2, NULL), (3, -7)",
    )
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, a integer, v integer, s text)")
    transfer(my_db, dst_db, chunk_rows=2)
    mine = my_rows(my_db, "SELECT id, a, v, s FROM t ORDER BY id")
    assert mine[0] == (1, 10, 20, 'x,10"')
    assert pg_rows(dst_db, "SELECT id, a, v, s FROM t ORDER BY id") == mine


_TEXT_KEYS = ("a", "B", "a b", "a,b", 'a"b', "a'b", "a\\b", "😀", "𝄞 clef", "é", "z" * 40, "0", "-1", "")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_varchar_key_chunks_cover_every_row_once(my_db: Any, dst_db: Any, parallelism: int) -> None:
    my_exec(my_db, "CREATE TABLE t (k VARCHAR(40) CHARACTER SET utf8mb4 PRIMARY KEY, n INT)")
    my_exec(my_db, ("INSERT INTO t VALUES " + ", ".join(["(%s, %s)"] * len(_TEXT_KEYS)), _flat(_TEXT_KEYS)))
    pg_exec(dst_db, "CREATE TABLE t (k text PRIMARY KEY, n integer)")
    summary = transfer(my_db, dst_db, chunk_rows=2, parallelism=parallelism)
    assert summary.rows == len(_TEXT_KEYS)
    assert sorted(pg_rows(dst_db, "SELECT k, n FROM t")) == sorted(my_rows(my_db, "SELECT k, n FROM t"))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_datetime_key_chunks_cover_every_row_once(my_db: Any, dst_db: Any, parallelism: int) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (at DATETIME(6) PRIMARY KEY, n INT)",
        "INSERT INTO t SELECT '2026-01-01' + INTERVAL (seq * 1000003) MICROSECOND, seq FROM seq_1_to_50",
        "INSERT INTO t VALUES ('1000-01-01 00:00:00', 0), ('9999-12-31 23:59:59.999999', 51)",
    )
    pg_exec(dst_db, "CREATE TABLE t (at timestamp PRIMARY KEY, n integer)")
    summary = transfer(my_db, dst_db, chunk_rows=4, parallelism=parallelism)
    assert summary.rows == 52
    assert pg_rows(dst_db, "SELECT at, n FROM t ORDER BY at") == my_rows(
        my_db, "SELECT at, n FROM t ORDER BY at"
    )


@pytest.mark.parametrize("parallelism", [1, 3])
def test_timestamp_key_into_timestamptz_chunks_cover_every_row_once(
    my_db: Any, dst_db: Any, parallelism: int
) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (at TIMESTAMP(6) NOT NULL PRIMARY KEY, n INT)",
        "SET time_zone = '+00:00'",
        "INSERT INTO t SELECT '2026-01-01' + INTERVAL (seq * 1000003) MICROSECOND, seq FROM seq_1_to_50",
    )
    pg_exec(dst_db, "CREATE TABLE t (at timestamptz PRIMARY KEY, n integer)")
    summary = transfer(my_db, dst_db, chunk_rows=4, parallelism=parallelism)
    assert summary.rows == 50
    mine = my_rows(my_db, "SELECT at, n FROM t ORDER BY at", "SET time_zone = '+00:00'")
    assert pg_rows(dst_db, "SELECT at, n FROM t ORDER BY at") == [
        (at.replace(tzinfo=UTC), n) for at, n in mine
    ]


def test_transform_receives_every_value_in_its_natural_type(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, b BIT(64), u BIGINT UNSIGNED, "
        "d DATE, x FLOAT, tm TIME, bl BLOB, s VARCHAR(20))",
        "SET time_zone = '+00:00'",
        "INSERT INTO t VALUES (1, '2038-01-19 03:14:07.999999', 0xFFFFFFFFFFFFFFFF, 18446744073709551615, "
        "'9999-12-31', 3.402823466e38, '-838:59:59', 0x00FF, 'a,\"b'), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '')",
    )
    pg_exec(
        dst_db,
        "CREATE TABLE t (id integer PRIMARY KEY, ts timestamptz, b numeric(20,0), u numeric(20,0), d date, "
        "x real, tm interval, bl bytea, s text)",
    )
    seen: list[list[str]] = []

    def identity(frame: Any) -> Any:
        seen.append([str(t) for t in frame.dtypes])
        return frame

    transfer(my_db, dst_db, transform=identity, chunk_rows=10)
    assert seen[0][1].startswith("timestamp[us, tz=UTC]"), seen
    assert pg_rows(
        dst_db, "SELECT id, ts, b, u, d::text, float4send(x), tm::text, bl, s FROM t ORDER BY id"
    ) == [
        (
            1,
            datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
            Decimal(2**64 - 1),
            Decimal(2**64 - 1),
            "9999-12-31",
            struct.pack(">f", 3.402823466e38),
            "-838:59:59",
            b"\x00\xff",
            'a,"b',
        ),
        (2, None, None, None, None, None, None, None, ""),
    ]


def test_decimal_and_unsigned_keys_split_into_three_streams(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (k DECIMAL(30,10) PRIMARY KEY, n INT)",
        "INSERT INTO t SELECT seq / 7 - 3, seq FROM seq_1_to_40",
        "CREATE TABLE u (k BIGINT UNSIGNED PRIMARY KEY, n INT)",
        "INSERT INTO u SELECT 18446744073709551615 - seq * 1000000000000000, seq FROM seq_0_to_39",
    )
    pg_exec(dst_db, "CREATE TABLE t (k numeric(30,10) PRIMARY KEY, n integer)")
    pg_exec(dst_db, "CREATE TABLE u (k numeric(20,0) PRIMARY KEY, n integer)")
    for table in ("t", "u"):
        summary = transfer(my_db, dst_db, table, table, chunk_rows=4, parallelism=3)
        assert summary.rows == 40 and summary.consistency.startswith("one snapshot instant for 3 streams")
        mine = my_rows(my_db, f"SELECT k, n FROM {table} ORDER BY k")
        assert pg_rows(dst_db, f"SELECT k, n FROM {table} ORDER BY k") == mine


def _flat(keys: tuple[str, ...]) -> list[Any]:
    return [v for i, k in enumerate(keys) for v in (k, i)]


# -- 2. refused before any data moves -------------------------------------------------------------

REFUSALS = {
    # MariaDB type, a value, PostgreSQL type, what PostgreSQL holds after the suggested cast (as text)
    "bigint-unsigned-into-bigint": (
        "BIGINT UNSIGNED",
        "9223372036854775807",
        "bigint",
        "9223372036854775807",
    ),
    "double-into-real": ("DOUBLE", "0.1", "real", "0.1"),
    "decimal-into-narrower-numeric": ("DECIMAL(65,30)", "1.5", "numeric(10,2)", "1.50"),
    "blob-into-text": ("BLOB", "'abc'", "text", "abc"),
    "geometry-into-text": ("GEOMETRY", "ST_GeomFromText('POINT(1 2)')", "text", "POINT(1 2)"),
    "point-into-text": ("POINT", "ST_GeomFromText('POINT(1 2)')", "text", "POINT(1 2)"),
    "text-into-integer": ("VARCHAR(10)", "'12'", "integer", "12"),
    # DECIMAL(9,0) is the widest MariaDB type integer holds: the message warns that CAST clips the rest.
    "int-unsigned-into-integer": ("INT UNSIGNED", "123456789", "integer", "123456789"),
    "datetime-into-date": ("DATETIME", "'2020-01-01 10:00:00'", "date", "2020-01-01"),
    "bit64-into-bigint": ("BIT(64)", "0x7FFFFFFFFFFFFFFF", "bigint", "9223372036854775807"),
    "float-into-numeric-10-2": ("FLOAT", "1.5", "numeric(10,2)", "1.50"),
    "datetime6-into-timestamp3": (
        "DATETIME(6)",
        "'2020-01-01 10:00:00.123456'",
        "timestamp(3)",
        "2020-01-01 10:00:00.123",
    ),
    "tinyint4-into-boolean": ("TINYINT", "1", "boolean", "true"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_type_without_exact_mapping_is_refused_before_any_data_moves(
    my_db: Any, dst_db: Any, name: str
) -> None:
    my_type, value, pg_type, after_cast = REFUSALS[name]
    my_exec(my_db, f"CREATE TABLE t (id INT PRIMARY KEY, v {my_type})", f"INSERT INTO t VALUES (1, {value})")
    pg_exec(dst_db, f"CREATE TABLE t (id integer PRIMARY KEY, v {pg_type})")
    shown = my_rows(my_db, "SHOW COLUMNS FROM t LIKE 'v'")[0][1]  # the type as MariaDB spells it
    with pytest.raises(TransferConfigError) as refused:
        transfer(my_db, dst_db)
    message = str(refused.value)
    for part in (f"{my_db.database}.t ", f"'v' {shown} -> {pg_type}", "Cast them in source_sql", "clips"):
        assert part in message, (part, message)
    assert pg_rows(dst_db, "SELECT count(*) FROM t") == [(0,)]
    # The suggested cast is one the source accepts, and it lands the (fitting) value.
    found = re.search(r"for example SELECT (.+) AS `v`, \.\.\.", message)
    assert found is not None, message
    transfer(my_db, dst_db, source_sql=f"SELECT id, {found.group(1)} AS v FROM t", key_column="id")
    assert pg_rows(dst_db, "SELECT id, v::text FROM t") == [(1, after_cast)]


def _refused(my_db: Any, dst_db: Any, source_table: str = "t", **spec: Any) -> str:
    with pytest.raises(TransferConfigError) as refused:
        transfer(my_db, dst_db, source_table, **spec)
    assert pg_rows(dst_db, "SELECT count(*) FROM t") == [(0,)]
    return str(refused.value)


def test_keys_and_names_are_checked_before_any_data_moves(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id INT PRIMARY KEY, u INT NOT NULL, UNIQUE KEY (u), n INT NOT NULL, "
        "nu INT NULL, UNIQUE KEY (nu), a INT NOT NULL, b INT NOT NULL, UNIQUE KEY (a, b))",
        "INSERT INTO t VALUES (1, 1, 1, NULL, 1, 1), (2, 2, 1, NULL, 1, 2)",
        "CREATE TABLE nopk (x INT, y INT)",
        "INSERT INTO nopk VALUES (1, 1)",
        "CREATE TABLE pk2 (x INT, y INT, PRIMARY KEY (x, y))",
        "CREATE VIEW v AS SELECT * FROM t",
    )
    pg_exec(
        dst_db,
        "CREATE TABLE t (id integer, u integer, n integer, nu integer, a integer, b integer, x integer, y integer)",
    )
    db = my_db.database
    assert f"key_column 'nope' is not a column of {db}.t (columns: id, u, n, nu, a, b)" in _refused(
        my_db, dst_db, key_column="nope"
    )
    assert f"source_table {db}.nopk has no primary key: set key_column" in _refused(my_db, dst_db, "nopk")
    assert f"source_table {db}.pk2 has a composite primary key ['x', 'y']: set key_column" in _refused(
        my_db, dst_db, "pk2"
    )
    message = _refused(my_db, dst_db, key_column="n")
    assert f"key_column 'n' of {db}.t has no unique index of its own" in message
    assert "has no unique index of its own" in _refused(
        my_db, dst_db, key_column="a"
    )  # only (a, b) is unique
    assert f"key_column 'nu' of {db}.t can be NULL" in _refused(my_db, dst_db, key_column="nu")
    assert f"{db}.v is a view" in _refused(my_db, dst_db, "v", key_column="id")
    assert f"source_table 'missing' does not exist in MariaDB/MySQL database '{db}'" in _refused(
        my_db, dst_db, "missing"
    )
    assert f"incremental_column 'nope' is not a column of {db}.t (columns: id, u, n, nu, a, b)" in _refused(
        my_db, dst_db, incremental_column="nope"
    )
    assert "key_column 'nope' is not an output column of source_sql (columns: id, u)" in _refused(
        my_db, dst_db, source_sql="SELECT id, u FROM t", key_column="nope"
    )
    assert "source_sql is not a valid MariaDB/MySQL SELECT" in _refused(
        my_db, dst_db, source_sql="SELECT id, FROM t", key_column="id"
    )
    # A unique non-primary key is a valid key_column.
    assert transfer(my_db, dst_db, key_column="u").rows == 2
    with pytest.raises(TransferConfigError, match="key_column is required with source_sql"):
        transfer(my_db, dst_db, source_sql="SELECT id FROM t")


# -- 3. write modes ------------------------------------------------------------------------------------


def _items(my_db: Any, dst_db: Any, rows: int) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(12,2), "
        "at DATETIME(6) NOT NULL, KEY (at))",
        "INSERT INTO t SELECT seq, CONCAT(IF(seq % 10 = 0, '50% off ', 'item '), seq), seq * 1.25, "
        f"'2025-12-31 12:00:00' + INTERVAL (seq * 7) MINUTE FROM seq_1_to_{rows}",
    )
    pg_exec(
        dst_db,
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), at timestamp NOT NULL)",
    )


_COLS = "id, name, price, at"


def _same(my_db: Any, dst_db: Any, where: str = "TRUE") -> list[tuple[Any, ...]]:
    mine = my_rows(my_db, f"SELECT {_COLS} FROM t WHERE {where} ORDER BY id")
    assert pg_rows(dst_db, f"SELECT {_COLS} FROM t WHERE {where} ORDER BY id") == mine
    return mine


def test_append_reruns_add_nothing_twice_and_pick_up_new_keys(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 100)
    first = transfer(my_db, dst_db, chunk_rows=30, checkpoint_id="append")
    assert (first.rows, first.chunks) == (100, 4)
    again = transfer(my_db, dst_db, chunk_rows=30, checkpoint_id="append")
    assert again.rows == 0 and again.resumed_from == "100"
    my_exec(my_db, "INSERT INTO t SELECT seq, CONCAT('new ', seq), seq, '2026-02-01' FROM seq_101_to_120")
    later = transfer(my_db, dst_db, chunk_rows=30, checkpoint_id="append")
    assert later.rows == 20 and later.rows_read == 20
    assert len(_same(my_db, dst_db)) == 120


def test_truncate_replaces_everything(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 100)
    pg_exec(dst_db, "INSERT INTO t SELECT g, 'stale', 0, '2000-01-01' FROM generate_series(50, 500) g")
    summary = transfer(my_db, dst_db, chunk_rows=30, write_mode="truncate")
    assert summary.rows == 100
    assert len(_same(my_db, dst_db)) == 100
    assert pg_rows(dst_db, "SELECT count(*) FROM t WHERE name = 'stale'") == [(0,)]


def test_upsert_changes_existing_rows_and_adds_the_rest(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 100)
    pg_exec(dst_db, "INSERT INTO t SELECT g, 'old', -1, '2000-01-01' FROM generate_series(1, 100, 2) g")
    pg_exec(dst_db, "INSERT INTO t VALUES (1000, 'only in destination', 1, '2000-01-01')")
    summary = transfer(my_db, dst_db, chunk_rows=30, write_mode="upsert")
    assert summary.rows == 100
    assert len(_same(my_db, dst_db, "id <= 100")) == 100
    assert pg_rows(dst_db, "SELECT name FROM t WHERE id > 100") == [("only in destination",)]


def test_delete_insert_replaces_the_window_given_as_airflow_iso_bounds(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 600)  # 2025-12-31 12:07 .. 2026-01-03 9:59, every 7 minutes
    window = "at >= '2026-01-01 00:00:00' AND at < '2026-01-02 00:00:00'"
    # The destination: stale rows in the window (some the source no longer has), other days untouched.
    pg_exec(
        dst_db, "INSERT INTO t SELECT g, 'stale', 0, '2026-01-01 00:00:00' FROM generate_series(1, 700, 3) g"
    )
    pg_exec(dst_db, "INSERT INTO t VALUES (9000, 'before', 1, '2025-12-31 23:59:59.999999')")
    pg_exec(dst_db, "INSERT INTO t VALUES (9001, 'after', 1, '2026-01-02 00:00:00')")
    my_exec(my_db, "DELETE FROM t WHERE id IN (3, 4, 5) OR id > 9000")
    summary = transfer(
        my_db,
        dst_db,
        chunk_rows=50,
        write_mode="delete_insert",
        incremental_column="at",
        window_start="2026-01-01T00:00:00+00:00",
        window_end="2026-01-02T00:00:00+00:00",
    )
    in_window = _same(my_db, dst_db, window)
    assert summary.rows == len(in_window) == 24 * 60 // 7 + 1
    assert in_window[0][3].isoformat() == "2026-01-01T00:01:00" and in_window[-1][3].hour == 23
    assert pg_rows(dst_db, f"SELECT id, name FROM t WHERE NOT ({window}) ORDER BY id") == [
        (9000, "before"),
        (9001, "after"),
    ]


# -- 4. source_sql -----------------------------------------------------------------------------------


def test_source_sql_with_percent_literals_and_computed_columns(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 300)
    pg_exec(
        dst_db, "CREATE TABLE deals (id bigint PRIMARY KEY, name text, doubled numeric(14,2), odd bigint)"
    )
    query = (
        "SELECT id, name, price * 2 AS doubled, id % 2 AS odd FROM t WHERE name LIKE '50%' AND id % 3 <> 0"
    )
    summary = transfer(my_db, dst_db, destination="deals", source_sql=query, key_column="id", chunk_rows=7)
    mine = my_rows(my_db, query + " ORDER BY id")
    assert summary.rows == len(mine) == 20 and summary.source == "source_sql"
    assert pg_rows(dst_db, "SELECT id, name, doubled, odd FROM deals ORDER BY id") == mine
    assert mine[0] == (10, "50% off 10", Decimal("25.00"), 0)


# -- 5. parallel streams ------------------------------------------------------------------------------


def test_three_streams_read_one_snapshot_instant(my_db: Any, dst_db: Any) -> None:
    _items(my_db, dst_db, 3000)
    summary = transfer(my_db, dst_db, chunk_rows=200, parallelism=3)
    assert summary.rows == 3000 and summary.rows_read == 3000
    assert summary.consistency.startswith("one snapshot instant for 3 streams"), summary.consistency
    assert len(_same(my_db, dst_db)) == 3000


# -- 8. an unreachable server ---------------------------------------------------------------------------


def test_unreachable_server_names_the_host_never_the_password(my_db: Any, dst_db: Any) -> None:
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY)")
    password = "pw-Zq8!never-shown"
    factory = my_factory(my_db, host="127.0.0.1", port=1, password=password, connect_timeout=3)
    with pytest.raises(TransferError) as failed:
        transfer(my_db, dst_db, factory=factory)
    text = "".join(traceback.format_exception(failed.value))
    assert "127.0.0.1" in str(failed.value), str(failed.value)
    assert password not in text and password not in repr(failed.value)


# -- 6. consistency under concurrent writers -----------------------------------------------------------

ACCOUNTS, OPENING = 20_000, 1_000
TOTAL = ACCOUNTS * OPENING


def _accounts(my_db: Any, dst_db: Any) -> None:
    my_exec(
        my_db,
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, note VARCHAR(20)) ENGINE=InnoDB",
        f"INSERT INTO accounts SELECT 2 * seq - 1, {OPENING}, 'account' FROM seq_1_to_{ACCOUNTS}",
    )
    pg_exec(dst_db, "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL, note text)")
    # 20 ms per chunk on the destination: the transfer spans many writer commits.
    pg_exec(
        dst_db,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.02); "
        "RETURN NULL; END $$",
    )
    pg_exec(dst_db, "CREATE TRIGGER slow AFTER INSERT ON accounts FOR EACH STATEMENT EXECUTE FUNCTION slow()")


def _balances(dst_db: Any) -> tuple[int, int, int, int]:
    """(total, odd-id rows, sum of even-id rows, even-id rows) in the destination."""
    row = pg_rows(
        dst_db,
        "SELECT sum(balance), count(*) FILTER (WHERE id % 2 = 1), coalesce(sum(balance) FILTER (WHERE id % 2 = 0), 0), "
        "count(*) FILTER (WHERE id % 2 = 0) FROM accounts",
    )[0]
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


@pytest.mark.parametrize("parallelism", [1, 3])
def test_snapshot_holds_the_invariant_under_concurrent_writers(
    my_db: Any, dst_db: Any, parallelism: int
) -> None:
    _accounts(my_db, dst_db)
    with BalanceWriters(my_db, ACCOUNTS) as writers:
        writers.wait_for(300)
        before = writers.commits
        summary = transfer(my_db, dst_db, "accounts", "accounts", chunk_rows=500, parallelism=parallelism)
        during = writers.commits - before
    assert summary.chunks >= 40 and during >= 50, (summary.chunks, during)
    total, odd, even_sum, even_rows = _balances(dst_db)
    assert (total, odd, even_sum) == (TOTAL, ACCOUNTS, 0)
    assert even_rows % 2 == 0 and even_rows > 0
    assert (
        pg_rows(dst_db, f"SELECT count(*) FROM accounts WHERE balance <> {OPENING} AND id % 2 = 1")[0][0] > 0
    )
    if parallelism == 1:
        assert summary.consistency == "one snapshot"
    else:
        assert summary.consistency.startswith("one snapshot instant for 3 streams"), summary.consistency
    # The writers kept the invariant on the source too.
    assert my_rows(my_db, "SELECT SUM(balance) FROM accounts") == [(TOTAL,)]


def test_source_sql_streams_take_one_snapshot_each_and_say_so(my_db: Any, dst_db: Any) -> None:
    _accounts(my_db, dst_db)
    with BalanceWriters(my_db, ACCOUNTS) as writers:
        writers.wait_for(100)
        summary = transfer(
            my_db,
            dst_db,
            destination="accounts",
            source_sql="SELECT id, balance, note FROM accounts",
            key_column="id",
            chunk_rows=1000,
            parallelism=3,
        )
    # No table to lock for a query: each stream has its own snapshot, and the summary says so. Every
    # account (never deleted) arrives exactly once whatever the snapshots; the total is only promised
    # per key range, so it is not asserted.
    assert summary.consistency.startswith("3 snapshots, one per stream"), summary.consistency
    assert "a transaction committed between two starts may show in one range only" in summary.consistency
    assert _balances(dst_db)[1] == ACCOUNTS


@pytest.mark.parametrize("engine", ["MyISAM", "Aria"])
def test_a_table_without_mvcc_is_not_reported_as_a_snapshot(my_db: Any, dst_db: Any, engine: str) -> None:
    my_exec(
        my_db,
        f"CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE={engine}",
        "INSERT INTO t SELECT seq, seq * 3 FROM seq_1_to_100",
    )
    pg_exec(dst_db, "CREATE TABLE t (id integer PRIMARY KEY, v integer)")
    for parallelism in (1, 2):
        pg_exec(dst_db, "TRUNCATE t")
        summary = transfer(my_db, dst_db, chunk_rows=30, parallelism=parallelism)
        assert summary.consistency.startswith(f"no snapshot: {my_db.database}.t ({engine}) has no MVCC")
        assert pg_rows(dst_db, "SELECT id, v FROM t ORDER BY id") == my_rows(
            my_db, "SELECT id, v FROM t ORDER BY id"
        )


# -- 7. resume after a crash ------------------------------------------------------------------------

ROWS, CHUNK = 20_000, 1_000

_CHILD = """
import json, sys
import MySQLdb, psycopg
from etl_platform.transfer import TransferEngine, TransferSpec
from etl_platform.transfer.sources.mysql import MySqlSource
args = json.loads(sys.argv[1])
source = MySqlSource(lambda: MySQLdb.connect(**args["my"]))
summary = TransferEngine(TransferSpec(**args["spec"]), source, lambda: psycopg.connect(args["dst"])).run()
print(json.dumps(summary.as_dict()))
"""


def _checkpoint(dst_db: Any) -> tuple[int, int]:
    """(chunks, rows written) the checkpoint table says are committed."""
    row = pg_rows(
        dst_db,
        "SELECT coalesce(sum(chunks), 0), coalesce(sum(written), 0) FROM transfer_checkpoints "
        "WHERE transfer_id = 'crash'",
    )[0]
    return int(row[0]), int(row[1])


@pytest.mark.parametrize(("mode", "parallelism"), [("append", 1), ("truncate", 1), ("append", 3)])
def test_sigkill_mid_transfer_then_rerun_resumes_exactly(
    my_db: Any, dst_db: Any, mode: str, parallelism: int
) -> None:
    my_exec(
        my_db,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, payload VARCHAR(80), amount DECIMAL(12,2))",
        f"INSERT INTO t SELECT seq, CONCAT(REPEAT('x', 40), seq), seq / 100 FROM seq_1_to_{ROWS}",
    )
    pg_exec(dst_db, "CREATE TABLE t (id bigint PRIMARY KEY, payload text, amount numeric(12,2))")
    # 50 ms per COPY statement on the destination, so the kill lands mid-transfer.
    pg_exec(
        dst_db,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); "
        "RETURN NULL; END $$",
    )
    target = "t" if mode == "append" else f"swap_{hashlib.sha256(b'crash').hexdigest()[:16]}"
    spec = {
        "source_table": "t",
        "destination_table": dst_db.table("t"),
        "chunk_rows": CHUNK,
        "write_mode": mode,
        "parallelism": parallelism,
        "checkpoint_id": "crash",
        "checkpoint_schema": dst_db.schema,
    }
    args = {"my": connect_kwargs(my_db), "dst": dst_db.conninfo, "spec": spec}
    if mode == "append":
        pg_exec(dst_db, "CREATE TRIGGER slow AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION slow()")
    worker = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            with contextlib.suppress(Exception):  # the checkpoint table (or stage) may not exist yet
                if (
                    mode == "truncate"
                    and pg_rows(dst_db, f"SELECT to_regclass('{target}') IS NOT NULL")[0][0]
                ):
                    pg_exec(
                        dst_db,
                        f"CREATE TRIGGER slow AFTER INSERT ON {target} FOR EACH STATEMENT EXECUTE FUNCTION slow()",
                    )
                    target = "armed"
                if _checkpoint(dst_db)[0] >= 2:
                    break
            time.sleep(0.01)
        assert worker.poll() is None, worker.communicate()
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)

    chunks, committed = _checkpoint(dst_db)
    assert chunks >= 2 and 0 < committed < ROWS
    if parallelism == 1:
        assert committed == chunks * CHUNK  # only whole, committed chunks survive
    published = pg_rows(dst_db, "SELECT count(*) FROM t")[0][0]
    assert published == (committed if mode == "append" else 0)  # truncate publishes only at the end

    summary = transfer(
        my_db,
        dst_db,
        chunk_rows=CHUNK,
        write_mode=mode,
        parallelism=parallelism,
        checkpoint_id="crash",
    )
    assert summary.rows_before_resume == committed and summary.resumed_from is not None
    remaining = ROWS - committed
    assert remaining <= summary.rows_read <= remaining + CHUNK * parallelism, (summary.rows_read, remaining)
    mine = my_rows(my_db, "SELECT id, payload, amount FROM t ORDER BY id")
    assert pg_rows(dst_db, "SELECT id, payload, amount FROM t ORDER BY id") == mine

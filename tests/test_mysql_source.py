"""MariaDB as a transfer source, against a real MariaDB and a real PostgreSQL: every value at its limits
compared on both ends, refusals before data moves, write modes, snapshots under concurrent writers,
resume after SIGKILL, and an unreachable server."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.mysql_fixtures import my_exec, my_rows, pg_exec, pg_rows, transfer

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
    from tests.mysql_fixtures import my_factory

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

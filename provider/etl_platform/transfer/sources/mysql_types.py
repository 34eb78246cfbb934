"""MariaDB/MySQL column types -> the SQL that prints each value as a PostgreSQL CSV field.

The server formats every value itself (CONCAT_WS over per-column expressions), so a chunk arrives as
one ready CSV line per row and the client never decodes a value. Each expression is chosen for the
pair (source type, destination type); a pair with no exact mapping is refused before any data moves.

Exactness notes:
- FLOAT prints with 6 significant digits; widened to DOUBLE it prints every bit, and PostgreSQL's
  `real` input rounds that back to the same single-precision value. DOUBLE prints its shortest
  round-trip form (5e-324 and 1.7976931348623157e308 included), so `double precision` gets the same
  bits. MariaDB itself refuses FLOAT values above 3.402823466e38 (FLT_MAX, as it spells it) and
  stores -0.0 as +0.0 in FLOAT and DOUBLE columns: PostgreSQL receives +0.0, what MariaDB holds.
- A floating-point value goes into numeric only when unconstrained: numeric(p,s) would round it.
  numeric with a negative scale (PostgreSQL 15: numeric(5,-2) rounds to hundreds) takes no integer
  or decimal; timestamp(p), time(p) and interval(p) take no source with more fractional digits.
- Only integers of display width 1 go into boolean (TINYINT(1), or `(x <> 0)` in source_sql, typed
  int(1)); a value other than 0 and 1 fails its chunk, naming the row.
- DATETIME/TIMESTAMP print with their own fractional digits; the session's time_zone is pinned to
  UTC, so TIMESTAMP values arrive as UTC and land in `timestamptz` (the destination session is UTC).
- Zero dates ('0000-00-00', '2020-00-15', year 0) exist only under a permissive sql_mode and have no
  PostgreSQL value: `zero_dates="null"` writes NULL, `"error"` lets PostgreSQL refuse the row (the
  chunk fails naming table, column and key range). Never a different date.
- TIME ranges over +-838:59:59: `interval` holds every value; `time` takes 00:00:00-24:00:00 only.

A refusal suggests a source_sql cast that the mapping accepts (`cast_hint`) and the type that would
hold every value. The cast is the user's decision to round, clip or wrap: MariaDB's CAST does that to
a value that does not fit (CAST(4294967295 AS DECIMAL(9,0)) is 999999999) with only a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from etl_platform.transfer.catalog import Column, TypeInfo

UTC_SUFFIX = "+00"  # what a value for a timestamptz destination ends with


class ZeroDates(StrEnum):
    NULL = "null"
    ERROR = "error"


INTEGER_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_TEXT = {
    "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json",
    "uuid", "inet4", "inet6",
}  # fmt: skip
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_DATES = {"date", "datetime", "timestamp"}
_SPATIAL = {
    "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
    "geometrycollection",
}  # fmt: skip

# PostgreSQL built-in type OIDs (the same in every database).
_PG = {
    "bool": 16, "bytea": 17, "int8": 20, "int2": 21, "int4": 23, "text": 25, "float4": 700,
    "float8": 701, "bpchar": 1042, "varchar": 1043, "date": 1082, "time": 1083, "timestamp": 1114,
    "timestamptz": 1184, "interval": 1186, "bit": 1560, "varbit": 1562, "numeric": 1700,
}  # fmt: skip
# numeric(p,s) as format_type prints it; PostgreSQL 15 allows a negative scale (numeric(5,-2) rounds
# to hundreds), which must not read as "unconstrained".
_NUMERIC_TYPMOD = re.compile(r"\((\d+)(?:,(-?\d+))?\)")
_PG_INT_BITS = {_PG["int2"]: 16, _PG["int4"]: 32, _PG["int8"]: 64}
_PG_FLOAT_MANTISSA = {_PG["float4"]: 24, _PG["float8"]: 53}


@dataclass(frozen=True)
class MyColumn:
    """A source column as SHOW FULL COLUMNS describes it."""

    name: str
    type: str  # "bigint(20) unsigned", "decimal(65,30)", "enum('a','b')", ...
    collation: str | None = None
    nullable: bool = True

    @property
    def base(self) -> str:
        return re.split(r"[(\s]", self.type.strip().lower(), maxsplit=1)[0]

    @property
    def unsigned(self) -> bool:
        return " unsigned" in self.type.lower()

    @property
    def args(self) -> tuple[int, ...]:
        """The numbers in parentheses (length, precision and scale); none for enum/set."""
        if self.base in ("enum", "set"):
            return ()
        found = re.search(r"\(([\d,\s]+)\)", self.type)
        return tuple(int(a) for a in found.group(1).split(",")) if found else ()

    @property
    def is_boolean_like(self) -> bool:
        """TINYINT(1) (BOOLEAN), or any integer of display width 1: what a comparison in source_sql,
        `(x <> 0)`, is typed as (int(1)). A value other than 0/1 still fails the load, naming the row."""
        return self.base in INTEGER_BITS and self.args[:1] == (1,)

    def integer_range(self) -> tuple[int, int]:
        bits = INTEGER_BITS[self.base]
        return (0, 2**bits - 1) if self.unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


class NoMapping(Exception):
    """This (source, destination) type pair has no exact mapping; the message says why."""


def quote_ident(name: str) -> str:
    """A MariaDB/MySQL identifier in backticks (a backtick inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"


def natural_type(col: MyColumn) -> tuple[int, str]:
    """The PostgreSQL type (OID, name) that holds every value of `col`: what a transform receives."""
    base = col.base
    if base in INTEGER_BITS:
        low, high = col.integer_range()
        if high <= 2**63 - 1 and low >= -(2**63):
            return _PG["int8"], "bigint"
        return _PG["numeric"], f"numeric({len(str(high))},0)"
    if base in ("decimal", "numeric", "dec", "fixed"):
        return _PG["numeric"], "numeric"
    if base in ("float", "double", "real"):
        return _PG["float8"], "double precision"
    if base == "bit":
        width = col.args[0] if col.args else 1
        return (_PG["int8"], "bigint") if width < 64 else (_PG["numeric"], "numeric(20,0)")
    if base == "year":
        return _PG["int4"], "integer"
    if base == "date":
        return _PG["date"], "date"
    if base == "datetime":
        return _PG["timestamp"], "timestamp without time zone"
    if base == "timestamp":
        return _PG["timestamptz"], "timestamp with time zone"
    if base == "time":
        return _PG["interval"], "interval"
    if base in _BINARY:
        return _PG["bytea"], "bytea"
    if base in _TEXT:
        return _PG["text"], "text"
    raise NoMapping(f"MariaDB type {col.type} has no PostgreSQL mapping")


def cast_hint(col: MyColumn, dest: Column) -> str:
    """A source_sql expression for `col` that maps onto `dest`, for a refusal's message.

    A cast is the user's explicit choice to round, clip or reformat: MariaDB's CAST does that to a
    value that does not fit with only a warning, so the message says so and also names the
    destination type that would hold every value.
    """
    ident = quote_ident(col.name)
    oid = dest.type_oid
    if col.base in _SPATIAL:
        return f"ST_AsBinary({ident})" if oid == _PG["bytea"] else f"ST_AsText({ident})"
    if oid == _PG["bool"]:
        return f"({ident} <> 0)"
    if oid == _PG["int8"]:
        return f"CAST({ident} AS SIGNED)"
    if oid in _PG_INT_BITS:  # DECIMAL(4,0) / DECIMAL(9,0): the widest MariaDB type smallint/integer hold
        return f"CAST({ident} AS DECIMAL({len(str(2 ** (_PG_INT_BITS[oid] - 1))) - 1},0))"
    if oid == _PG["numeric"]:
        precision, scale = _numeric_typmod(dest.type_name) or (65, 30)
        return f"CAST({ident} AS DECIMAL({min(precision, 65)},{min(max(scale, 0), 38)}))"
    if oid in _PG_FLOAT_MANTISSA:
        return f"CAST({ident} AS {'FLOAT' if oid == _PG['float4'] else 'DOUBLE'})"
    digits = re.search(r"\((\d)\)", dest.type_name)
    fraction = digits.group(1) if digits else "6"
    if oid == _PG["date"]:
        return f"CAST({ident} AS DATE)"
    if oid in (_PG["timestamp"], _PG["timestamptz"]):
        return f"CAST({ident} AS DATETIME({fraction}))"
    if oid in (_PG["time"], _PG["interval"]):
        return f"CAST({ident} AS TIME({fraction}))"
    if oid == _PG["bytea"]:
        return f"CAST({ident} AS BINARY)"
    if col.base in _BINARY:
        return f"CONVERT({ident} USING utf8mb4)"
    return f"CAST({ident} AS CHAR)"


def field_sql(col: MyColumn, dest: Column, dest_type: TypeInfo | None, zero_dates: ZeroDates) -> str:
    """The expression printing `col` as the CSV field `dest` reads (NULL -> empty, unquoted)."""
    return f"IFNULL({_value_sql(col, dest, dest_type, zero_dates)}, '')"


def _value_sql(col: MyColumn, dest: Column, dest_type: TypeInfo | None, zero_dates: ZeroDates) -> str:
    ident = quote_ident(col.name)
    base = col.base
    oid = dest.type_oid
    category = dest_type.category if dest_type is not None else ("S" if oid in (25, 1042, 1043) else "")
    is_string = category == "S"
    if base in _TEXT:
        # Every string quoted: "" stays an empty string, an unquoted empty field is NULL.
        if category in ("N", "B", "D") or oid == _PG["bytea"]:
            raise NoMapping(f"a text value is not a {dest.type_name}")
        return _quoted(f"CONVERT({ident} USING utf8mb4)")
    if base in _BINARY:
        if oid != _PG["bytea"]:
            raise NoMapping(f"binary data is not {dest.type_name} (only bytea holds any byte string)")
        return f"CONCAT('\\\\x', HEX({ident}))"
    if base in INTEGER_BITS:
        _check_integer(col, dest, oid, category)
        return ident
    if base in ("decimal", "numeric", "dec", "fixed"):
        _check_decimal(col, dest, oid, is_string)
        return ident
    if base in ("float", "double", "real"):
        return _float_sql(col, dest, ident, is_string)
    if base == "bit":
        return _bit_sql(col, dest, ident, is_string)
    if base == "year":
        if (
            oid in _PG_INT_BITS
            or is_string
            or (oid == _PG["numeric"] and _numeric_holds_integers(dest.type_name))
        ):
            return f"({ident} + 0)"
        raise NoMapping(f"a YEAR is not a {dest.type_name}")
    if base in _DATES:
        return _date_sql(col, dest, ident, is_string, zero_dates)
    if base == "time":
        if oid in (_PG["interval"], _PG["time"]) or is_string:
            _check_fraction(col, dest, is_string)
            return ident
        raise NoMapping(f"a TIME (up to +-838:59:59) is not a {dest.type_name}; use interval")
    raise NoMapping(f"MariaDB type {col.type} has no PostgreSQL mapping")


def _float_sql(col: MyColumn, dest: Column, ident: str, is_string: bool) -> str:
    base, oid = col.base, dest.type_oid
    single = base == "float" and not (col.args and col.args[0] > 24)
    if oid == _PG["float4"] and not single:
        raise NoMapping("a DOUBLE does not fit real without rounding; use double precision")
    if oid == _PG["numeric"] and _numeric_typmod(dest.type_name) is not None:
        raise NoMapping(f"a floating-point value is rounded by {dest.type_name}; use unconstrained numeric")
    if oid not in (_PG["float4"], _PG["float8"], _PG["numeric"]) and not is_string:
        raise NoMapping(f"a floating-point value is not a {dest.type_name}")
    return f"CAST({ident} AS DOUBLE)" if single else ident


def _bit_sql(col: MyColumn, dest: Column, ident: str, is_string: bool) -> str:
    oid = dest.type_oid
    width = col.args[0] if col.args else 1
    if oid in (_PG["bit"], _PG["varbit"]) or is_string:
        if oid == _PG["bit"] and not dest.type_name.endswith(f"({width})"):
            raise NoMapping(f"BIT({width}) needs bit({width}) or bit varying exactly")
        return f"LPAD(BIN({ident}), {width}, '0')"
    if (oid in _PG_INT_BITS and width < _PG_INT_BITS[oid]) or (
        oid == _PG["numeric"] and _numeric_holds_integers(dest.type_name)
    ):
        return f"({ident} + 0)"
    raise NoMapping(f"BIT({width}) is not a {dest.type_name}")


def _date_sql(col: MyColumn, dest: Column, ident: str, is_string: bool, zero_dates: ZeroDates) -> str:
    base, oid = col.base, dest.type_oid
    allowed = {"date": (_PG["date"], _PG["timestamp"], _PG["timestamptz"])}.get(
        base, (_PG["timestamp"], _PG["timestamptz"])
    )
    if oid not in allowed and not is_string:
        raise NoMapping(f"a {base.upper()} is not a {dest.type_name} without losing part of it")
    _check_fraction(col, dest, is_string)
    value = ident
    if zero_dates is ZeroDates.NULL:
        value = f"IF(YEAR({ident}) = 0 OR MONTH({ident}) = 0 OR DAYOFMONTH({ident}) = 0, NULL, {ident})"
    if oid == _PG["timestamptz"]:
        # The zone travels with the value: no session TimeZone can shift it, and a transform's
        # CSV reader needs it for a zoned timestamp. (A key's "+00" is dropped again for `key > lo`.)
        value = f"CONCAT({value}, '{' 00:00:00' if base == 'date' else ''}{UTC_SUFFIX}')"
    return value


def _quoted(expr: str) -> str:
    return f"CONCAT('\"', REPLACE({expr}, '\"', '\"\"'), '\"')"


def _check_integer(col: MyColumn, dest: Column, oid: int, category: str) -> None:
    low, high = col.integer_range()
    if category == "S":
        return
    if oid == _PG["bool"]:
        if col.is_boolean_like:
            return  # 0/1 load as false/true; PostgreSQL refuses any other value, naming the row
        raise NoMapping("only TINYINT(1) maps to boolean")
    if oid in _PG_INT_BITS:
        bits = _PG_INT_BITS[oid]
        if low >= -(2 ** (bits - 1)) and high <= 2 ** (bits - 1) - 1:
            return
        raise NoMapping(f"values up to {high} do not fit {dest.type_name}; use {_wider_integer(col)}")
    if oid == _PG["numeric"]:
        if _numeric_holds_integers(dest.type_name, len(str(high))):
            return
        raise NoMapping(f"values up to {high} need {len(str(high))} integer digits and a scale of 0 or more")
    if oid in _PG_FLOAT_MANTISSA:
        if max(abs(low), high) <= 2 ** _PG_FLOAT_MANTISSA[oid]:
            return
        raise NoMapping(f"values up to {high} lose digits in {dest.type_name}")
    raise NoMapping(f"an integer is not a {dest.type_name}")


def _wider_integer(col: MyColumn) -> str:
    _, high = col.integer_range()
    if high <= 2**31 - 1:
        return "integer"
    return "bigint" if high <= 2**63 - 1 else f"numeric({len(str(high))},0)"


def _check_decimal(col: MyColumn, dest: Column, oid: int, is_string: bool) -> None:
    precision, scale = (*col.args, 0)[:2] if col.args else (10, 0)
    if is_string:
        return
    if oid == _PG["numeric"]:
        typmod = _numeric_typmod(dest.type_name)
        if typmod is None:
            return
        dest_precision, dest_scale = typmod
        if dest_precision - dest_scale >= precision - scale and dest_scale >= scale:
            return
        raise NoMapping(f"DECIMAL({precision},{scale}) does not fit {dest.type_name} without rounding")
    if oid in _PG_INT_BITS and scale == 0 and precision < len(str(2 ** (_PG_INT_BITS[oid] - 1))):
        return
    raise NoMapping(f"DECIMAL({precision},{scale}) is not a {dest.type_name} without rounding")


def _numeric_typmod(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a numeric(p,s); None when unconstrained."""
    found = _NUMERIC_TYPMOD.search(type_name)
    return None if found is None else (int(found.group(1)), int(found.group(2) or 0))


def _numeric_holds_integers(type_name: str, digits: int = 0) -> bool:
    """Whether a numeric(p,s) keeps integers of `digits` digits unchanged: a negative scale rounds
    them (numeric(5,-2) stores 127 as 100); too few integer digits only fail the load."""
    typmod = _numeric_typmod(type_name)
    if typmod is None:
        return True
    precision, scale = typmod
    return scale >= 0 and precision - scale >= digits


def _check_fraction(col: MyColumn, dest: Column, is_string: bool) -> None:
    """timestamp(p), time(p) and interval(p) round fractional seconds past p digits: refuse a source
    that has more (DATETIME(6) into timestamp(3) would round .999999 up to the next second)."""
    digits = col.args[0] if col.args else 0
    found = None if is_string else re.search(r"\((\d)\)", dest.type_name)
    if found is not None and int(found.group(1)) < digits:
        raise NoMapping(f"{dest.type_name} rounds the {digits} fractional digits of a {col.type}")

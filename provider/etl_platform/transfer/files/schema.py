"""Which Arrow types a PostgreSQL column can take without losing or changing values.

Checked per file and column before any row moves. The rule, by the destination's base type (domains
are looked through):

- integers into a wide-enough integer, or numeric with room for every digit; uint64 only into numeric
- float16/32 into real, double precision or numeric; float64 into double precision or numeric
- decimal(p, s) into numeric with at least s fraction digits and p - s integer digits
- date into date or timestamp(tz); naive timestamps into timestamp or timestamptz (read as UTC);
  zoned timestamps only into timestamptz; time into time
- bool into boolean; binary into bytea
- strings into anything: PostgreSQL parses them as its text input (uuid, enum, json, date, ...)
- list/struct/map only into json or jsonb, written as JSON text
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa

from etl_platform.transfer.catalog import Column

# pg_type OIDs of the built-in types the rules name.
BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON = 16, 17, 20, 21, 23, 25, 114
FLOAT4, FLOAT8, DATE, TIME = 700, 701, 1082, 1083
TIMESTAMP, TIMESTAMPTZ, NUMERIC, JSONB = 1114, 1184, 1700, 3802

# Decimal digits an integer type needs.
_INT_DIGITS = {
    pa.int8(): 3, pa.uint8(): 3, pa.int16(): 5, pa.uint16(): 5,
    pa.int32(): 10, pa.uint32(): 10, pa.int64(): 19, pa.uint64(): 20,
}  # fmt: skip
# The integer columns each Arrow integer type fits into.
_INT_FITS = {
    pa.int8(): {INT2, INT4, INT8}, pa.uint8(): {INT2, INT4, INT8}, pa.int16(): {INT2, INT4, INT8},
    pa.uint16(): {INT4, INT8}, pa.int32(): {INT4, INT8}, pa.uint32(): {INT8}, pa.int64(): {INT8},
    pa.uint64(): set(),
}  # fmt: skip
_NUMERIC_MOD = re.compile(r"^numeric\((\d+)(?:,(\d+))?\)$")

_BASE_TYPES = """
WITH RECURSIVE walk(start, oid, basetype, depth) AS (
    SELECT t.oid, t.oid, t.typbasetype, 0 FROM pg_type t WHERE t.oid = ANY(%s::oid[])
    UNION ALL
    SELECT w.start, t.oid, t.typbasetype, w.depth + 1
    FROM walk w JOIN pg_type t ON t.oid = w.basetype WHERE w.basetype <> 0 AND w.depth < 10
)
SELECT DISTINCT ON (start) start::int, oid::int FROM walk ORDER BY start, depth DESC
"""


@dataclass(frozen=True)
class Target:
    """A destination column and the built-in type under it."""

    column: Column
    base_oid: int

    @property
    def numeric_room(self) -> tuple[int, int] | None:
        """(integer digits, fraction digits) of numeric(p, s); None when unconstrained."""
        match = _NUMERIC_MOD.match(self.column.type_name)
        if match is None:
            return None
        precision, scale = int(match.group(1)), int(match.group(2) or 0)
        return precision - scale, scale


def targets(conn: psycopg.Connection[Any], columns: Iterable[Column]) -> dict[str, Target]:
    """Each column with its base type (a domain's underlying type, recursively)."""
    cols = list(columns)
    rows = conn.execute(_BASE_TYPES, ([c.type_oid for c in cols],)).fetchall()
    base = {r[0]: r[1] for r in rows}
    return {c.name: Target(c, base.get(c.type_oid, c.type_oid)) for c in cols}


def value_type(arrow_type: pa.DataType) -> pa.DataType:
    """Dictionary-encoded columns load as their values."""
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


_NESTED = (
    pa.types.is_list,
    pa.types.is_large_list,
    pa.types.is_fixed_size_list,
    pa.types.is_struct,
    pa.types.is_map,
    pa.types.is_list_view,
    pa.types.is_large_list_view,
)
_BINARY = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_fixed_size_binary,
    pa.types.is_binary_view,
)
_STRING = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _is_any(arrow_type: pa.DataType, kinds: tuple[Callable[[pa.DataType], bool], ...]) -> bool:
    """Whether the values (a dictionary's value type) are of one of the kinds (one Arrow predicate each)."""
    t = value_type(arrow_type)
    return any(kind(t) for kind in kinds)


def is_nested(arrow_type: pa.DataType) -> bool:
    return _is_any(arrow_type, _NESTED)


def is_binary(arrow_type: pa.DataType) -> bool:
    return _is_any(arrow_type, _BINARY)


def is_string(arrow_type: pa.DataType) -> bool:
    return _is_any(arrow_type, _STRING)


def loadable(arrow_type: pa.DataType, target: Target) -> bool:
    """True when every value of `arrow_type` lands unchanged in the target column (see the module doc)."""
    t = value_type(arrow_type)
    base = target.base_oid
    if pa.types.is_null(t) or is_string(t):
        return True
    if pa.types.is_boolean(t):
        return base == BOOL
    if pa.types.is_integer(t):
        if base in _INT_FITS[t]:
            return True
        if base != NUMERIC:
            return False
        room = target.numeric_room
        return room is None or room[0] >= _INT_DIGITS[t]
    if pa.types.is_floating(t):
        allowed = {FLOAT8, NUMERIC} if t.bit_width == 64 else {FLOAT4, FLOAT8, NUMERIC}
        return base in allowed
    if pa.types.is_decimal(t):
        if base != NUMERIC:
            return False
        room = target.numeric_room
        return room is None or (room[0] >= t.precision - t.scale and room[1] >= t.scale)
    if pa.types.is_date(t):
        return base in (DATE, TIMESTAMP, TIMESTAMPTZ)
    if pa.types.is_timestamp(t):
        return base == TIMESTAMPTZ if t.tz is not None else base in (TIMESTAMP, TIMESTAMPTZ)
    if pa.types.is_time(t):
        return base == TIME
    if is_binary(t):
        return base == BYTEA
    if is_nested(t):
        return base in (JSON, JSONB)
    return False


# Arrow types for columns a transform adds (no destination column to take the type from).
def pg_oid_for(arrow_type: pa.DataType) -> tuple[int, str]:
    t = value_type(arrow_type)
    if pa.types.is_boolean(t):
        return BOOL, "boolean"
    if t in (pa.int8(), pa.uint8(), pa.int16()):
        return INT2, "smallint"
    if t in (pa.uint16(), pa.int32()):
        return INT4, "integer"
    if t in (pa.uint32(), pa.int64()):
        return INT8, "bigint"
    if pa.types.is_floating(t):
        return (FLOAT8, "double precision") if t.bit_width == 64 else (FLOAT4, "real")
    if pa.types.is_date(t):
        return DATE, "date"
    if pa.types.is_timestamp(t):
        return (
            (TIMESTAMPTZ, "timestamp with time zone") if t.tz else (TIMESTAMP, "timestamp without time zone")
        )
    return TEXT, "text"

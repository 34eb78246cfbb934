"""PostgreSQL columns -> the Arrow types an export writes, and PostgreSQL CSV chunks -> those types.

Values stay exact: numeric(p, s) becomes decimal(p, s) in Parquet (decimal256 past 38 digits);
unconstrained numeric stays text (it has no fixed scale, and NaN/Infinity have no decimal form);
timestamptz is timestamp(us, UTC); bytea is binary in Parquet and its `\\x` hex text in CSV. Types
without an exact Arrow counterpart (json, uuid, interval, arrays, ...) are their PostgreSQL text.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl_platform.transfer import transform_io
from etl_platform.transfer.catalog import Column
from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.files import schema

_NUMERIC_MOD = re.compile(r"^numeric\((\d+)(?:,(\d+))?\)$")


@dataclass(frozen=True)
class ExportColumn:
    name: str
    parse_as: Column  # what transform_io.csv_to_arrow reads the PostgreSQL CSV field as
    arrow_type: pa.DataType  # what the file stores


def export_columns(
    columns: tuple[Column, ...], base_oids: dict[str, int], binary: bool
) -> list[ExportColumn]:
    """`binary`: bytea as Arrow binary (Parquet); else as PostgreSQL's hex text (CSV)."""
    out = []
    for column in columns:
        base = base_oids.get(column.name, column.type_oid)
        parse_as = Column(column.name, base, column.type_name)
        parsed = transform_io.arrow_schema((parse_as,))[column.name]
        arrow_type = parsed
        match = _NUMERIC_MOD.match(column.type_name)
        if base == schema.NUMERIC and match is not None:
            precision, scale = int(match.group(1)), int(match.group(2) or 0)
            arrow_type = (
                pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
            )
        elif base == schema.BYTEA and binary:
            arrow_type = pa.binary()
        out.append(ExportColumn(column.name, parse_as, arrow_type))
    return out


def to_arrow(raw: bytes | bytearray, columns: list[ExportColumn]) -> pa.Table:
    """One chunk of PostgreSQL CSV (columns in COPY order) as a table of the export's types.

    The options are transform_io.csv_to_arrow's (which the transform path uses on the same CSV), but
    decimals are parsed as decimals and the input is cut into 1 MB blocks the parser spreads over its
    threads: about half the time of csv_to_arrow with a cast afterwards.
    """
    types = {c.name: _read_as(c.arrow_type) for c in columns}
    try:
        table = transform_io.read_pg_csv(raw, types, block_size=1 << 20)
    except pa.ArrowInvalid as exc:
        raise TransferError(f"a source value has no exact {_named(str(exc), columns)}") from None
    for index, column in enumerate(columns):
        if _read_as(column.arrow_type) == column.arrow_type:
            continue
        current = table.column(index)
        if pa.types.is_binary(column.arrow_type):
            converted = pa.chunked_array([bytea_from_hex(c) for c in current.chunks], pa.binary())
        else:
            try:
                converted = current.cast(column.arrow_type)
            except pa.ArrowInvalid as exc:
                raise TransferError(
                    f"a source value has no exact {column.arrow_type} form in column {column.name!r} "
                    f"({column.parse_as.type_name}): {exc}"
                ) from None
        table = table.set_column(index, pa.field(column.name, column.arrow_type), converted)
    return table


def _read_as(arrow_type: pa.DataType) -> pa.DataType:
    """What the CSV reader parses directly; bytea (hex) and decimal256 are read as text and converted."""
    return (
        pa.string()
        if pa.types.is_binary(arrow_type) or isinstance(arrow_type, pa.Decimal256Type)
        else arrow_type
    )


def _named(message: str, columns: list[ExportColumn]) -> str:
    """pyarrow says "In CSV column #4: ..."; name the column and its PostgreSQL type instead."""
    match = re.search(r"CSV column #(\d+)", message)
    if match is None or int(match.group(1)) >= len(columns):
        return f"Arrow form: {message}"
    column = columns[int(match.group(1))]
    return (
        f"{column.arrow_type} form in column {column.name!r} ({column.parse_as.type_name}): {message}. "
        "Cast the column in source_sql (for example to text) to export it."
    )


def bytea_from_hex(arr: pa.Array) -> pa.Array:
    """PostgreSQL's hex bytea output ('\\x' + hex digits) as binary, vectorized over the whole buffer."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(
        np.int64
    )
    data_buffer = arr.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    prefix = np.where(lengths >= 2, 2, 0)
    starts = offsets[:-1][prefix > 0] - first
    keep = np.ones(last - first, dtype=bool)
    keep[starts] = False
    keep[starts + 1] = False
    try:
        raw = binascii.unhexlify(data[first:last][keep].tobytes())
    except binascii.Error as exc:
        raise TransferError(f"a bytea value is not in hex form (bytea_output must be 'hex'): {exc}") from None
    out_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum((lengths - prefix) // 2, out=out_offsets[1:])
    result = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(out_offsets), pa.py_buffer(raw)])
    if arr.null_count:
        result = pc.if_else(arr.is_valid(), result, pa.scalar(None, pa.binary()))
    return result

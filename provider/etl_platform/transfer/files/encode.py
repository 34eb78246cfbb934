"""Arrow batches from files -> PostgreSQL CSV for COPY FROM (and for the engine's transform path).

`normalize` makes the types the window filter and the CSV writer handle (dictionaries decoded, views
made plain, nanoseconds refused unless exact in microseconds); `to_copy_csv` then writes what
transform_io.arrow_to_csv cannot: bytea as `\\x` hex, nested values as JSON text and, for a
transform, booleans as t/f and zoned timestamps with their offset, as the PostgreSQL source sends them.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl_platform.transfer import transform_io
from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.files.schema import is_binary, is_nested


def normalize(table: pa.Table, where: str) -> pa.Table:
    """The table with types PostgreSQL CSV can carry exactly; `where` names the rows in errors."""
    for index, field in enumerate(table.schema):
        column = table.column(index)
        t = field.type
        if pa.types.is_dictionary(t):
            column = column.cast(t.value_type)
            t = t.value_type
        new_type = _plain_type(t)
        if new_type is not None and new_type != t:
            try:
                column = column.cast(new_type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TransferError(
                    f"{where}: column {field.name!r} ({t}) cannot be loaded exactly as {new_type}: {exc}. "
                    "PostgreSQL keeps microseconds; round the values in the file or cast them upstream."
                ) from None
        if column is not table.column(index):
            table = table.set_column(index, pa.field(field.name, column.type), column)
    return table


def _plain_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return pa.timestamp("us", t.tz)
    if pa.types.is_time64(t) and t.unit == "ns":
        return pa.time64("us")
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return pa.large_binary()
    return None


def to_copy_csv(table: pa.Table, *, for_transform: bool) -> bytes:
    """PostgreSQL CSV (no header; "" is an empty string, an empty field NULL) of a normalized table."""
    for index, field in enumerate(table.schema):
        t = field.type
        column = table.column(index)
        if is_binary(t):
            column = pa.chunked_array([bytea_hex(chunk) for chunk in column.chunks], pa.large_string())
        elif is_nested(t):
            column = json_text(column, field.name)
        elif for_transform and pa.types.is_boolean(t):
            column = pc.if_else(column, "t", "f")
        elif for_transform and pa.types.is_timestamp(t) and t.tz is not None:
            naive = column.cast(pa.timestamp(t.unit)).cast(pa.string())
            column = pc.binary_join_element_wise(naive, "+00", "")
        else:
            continue
        table = table.set_column(index, pa.field(field.name, column.type), column)
    return transform_io.arrow_to_csv(table)


def bytea_hex(arr: pa.Array) -> pa.Array:
    """bytea's hex input form, '\\x' + two hex digits per byte, vectorized over the whole buffer."""
    if arr.type != pa.large_binary():
        arr = arr.cast(pa.large_binary())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    first, last = int(offsets[0]), int(offsets[-1])
    data = arr.buffers()[2]
    raw = memoryview(data)[first:last] if data is not None else memoryview(b"")
    hexed = np.frombuffer(binascii.hexlify(raw), dtype=np.uint8)
    lengths = np.diff(offsets)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(2 * lengths + 2, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    starts = out_offsets[:-1]
    is_hex = np.ones(len(out), dtype=bool)
    is_hex[starts] = False
    is_hex[starts + 1] = False
    out[is_hex] = hexed
    out[starts] = ord("\\")
    out[starts + 1] = ord("x")
    text = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(out_offsets), pa.py_buffer(out)])
    if arr.null_count:
        text = pc.if_else(arr.is_valid(), text, pa.scalar(None, pa.large_string()))
    return text


def json_text(column: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    """Nested values as JSON text (a Python pass: correct, not fast; nested columns are rare)."""
    out: list[str | None] = []
    for value in column.to_pylist(maps_as_pydicts="lossy"):
        try:
            out.append(
                None
                if value is None
                else json.dumps(value, ensure_ascii=False, default=_json_default, allow_nan=False)
            )
        except ValueError as exc:
            raise TransferError(f"column {name!r}: a nested value is not valid JSON ({exc}).") from None
    return pa.array(out, pa.large_string())


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "\\x" + bytes(value).hex()
    return str(value)  # dates, timestamps, decimals: their ISO/text form

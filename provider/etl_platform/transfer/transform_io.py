"""The per-chunk transform path: PostgreSQL CSV -> Arrow -> user callable -> Arrow -> CSV.

pyarrow's CSV reader and writer are multithreaded C++; a pandas read_csv/to_csv round trip is
about 2.7x slower. Column types come from the catalog, never inferred, so '00123' stays text and
numeric keeps its exact digits (it arrives as a string; convert it yourself if you need to).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from etl_platform.transfer.catalog import Column
from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.spec import TransformFormat

if TYPE_CHECKING:
    from etl_platform.transfer.plan import TransferPlan

# pg_type OIDs -> Arrow types that round-trip exactly through PostgreSQL's CSV text.
_ARROW_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),  # the source session runs with TimeZone=UTC
}

_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")


def arrow_schema(columns: tuple[Column, ...]) -> dict[str, pa.DataType]:
    return {c.name: _ARROW_TYPES.get(c.type_oid, pa.string()) for c in columns}


def csv_to_arrow(data: bytes | bytearray, columns: tuple[Column, ...]) -> pa.Table:
    try:
        return read_pg_csv(data, arrow_schema(columns), block_size=8 << 20)
    except pa.ArrowInvalid as exc:
        raise TransferError(f"could not decode a source chunk for the transform: {exc}") from None


def read_pg_csv(data: bytes | bytearray, types: dict[str, pa.DataType], *, block_size: int) -> pa.Table:
    """PostgreSQL's COPY CSV as Arrow: an unquoted empty field is NULL, a quoted one an empty string."""
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(types), block_size=block_size),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def transform_chunk(raw: bytes | bytearray, plan: TransferPlan, where: str) -> pa.Table:
    """One chunk's rows through the spec's transform; a failure of the callable names the chunk."""
    assert plan.spec.transform is not None
    table = csv_to_arrow(raw, plan.source_columns)
    try:
        return apply_transform(table, plan.spec.transform, plan.spec.transform_format)  # type: ignore[arg-type]
    except TransferError:
        raise
    except Exception as exc:
        raise TransferError(
            f"transform failed on the chunk of {plan.spec.source_label} with "
            f"{where}: {type(exc).__name__}: {exc}"
        ) from exc


def apply_transform(table: pa.Table, transform: Callable[[Any], Any], fmt: TransformFormat) -> pa.Table:
    if fmt is TransformFormat.ARROW:
        result = transform(table)
        if not isinstance(result, pa.Table):
            raise TransferError(
                f"an arrow transform must return a pyarrow.Table, got {type(result).__name__}"
            )
        return result
    import pandas as pd

    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    result = transform(frame)
    if not isinstance(result, pd.DataFrame):
        raise TransferError(f"a pandas transform must return a DataFrame, got {type(result).__name__}")
    return pa.Table.from_pandas(result, preserve_index=False)


def arrow_to_csv(table: pa.Table) -> bytes:
    """CSV for COPY FROM; the destination session runs with TimeZone=UTC.

    Time-zone-aware timestamps are written as naive UTC: Arrow stores them as UTC already, so the
    cast is free, while formatting with a zone costs about 25x more per value.
    """
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            naive = table.column(index).cast(pa.timestamp(field.type.unit))
            table = table.set_column(index, field.name, naive)
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, _WRITE_OPTIONS)
    return sink.getvalue()

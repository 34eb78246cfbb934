"""Files against the destination: every file's columns and types checked before any row moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa

from etl_platform.transfer import transform_io
from etl_platform.transfer.catalog import Column, Relation
from etl_platform.transfer.errors import TransferConfigError, TransferError
from etl_platform.transfer.files import csv_stream, pgbinary, schema
from etl_platform.transfer.files.csv_stream import CsvOptions
from etl_platform.transfer.files.locate import CSV, FoundFile, display
from etl_platform.transfer.files.parquet_stream import open_parquet
from etl_platform.transfer.plan import BINARY, TransferPlan, complete_plan, resolve_destination
from etl_platform.transfer.plan import CSV as CSV_COPY
from etl_platform.transfer.spec import TransferSpec

# The engine names chunks by their key in messages only; a file chunk is named by its position.
FILE_POSITION = Column(name="file position", type_oid=schema.TEXT, type_name="text")


@dataclass(frozen=True)
class FileLayout:
    """One file as read: its columns in file order with their Arrow types (None: an empty CSV)."""

    found: FoundFile
    label: str
    fields: tuple[pa.Field, ...] | None
    rows: int | None  # known for Parquet (footer), None for CSV

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields or ()]


def writable_columns(dest: Relation) -> list[Column]:
    return [c for c in dest.columns if not c.generated]


def inspect(
    fs: Any, found: FoundFile, opts: CsvOptions, dest: Relation, targets: dict[str, schema.Target]
) -> FileLayout:
    """Reads a file's schema (Parquet footer, CSV header) without reading its rows."""
    label = display(fs, found.path)
    if found.file_format == CSV:
        names = csv_stream.read_header(fs, found.path, found.compression, opts, label)
        if names is None:
            return FileLayout(found, label, None, 0)
        if not opts.header:
            columns = writable_columns(dest)
            if len(names) != len(columns):
                raise TransferConfigError(
                    f"{label} has {len(names)} fields per row but {dest.label} has {len(columns)} writable "
                    f"columns ({', '.join(c.name for c in columns)}); with header=False the fields must be "
                    "those columns in order."
                )
            names = [c.name for c in columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise TransferConfigError(f"{label}: the header repeats the columns {dupes}.")
        types = csv_types(names, targets)
        return FileLayout(found, label, tuple(pa.field(n, types[n]) for n in names), None)
    handle, parquet = open_parquet(fs, found.path, label)
    try:
        return FileLayout(found, label, tuple(parquet.schema_arrow), parquet.metadata.num_rows)
    except Exception as exc:
        raise TransferError(
            f"{label} is not a readable Parquet file ({type(exc).__name__}: {exc})."
        ) from None
    finally:
        handle.close()


def csv_types(names: list[str], targets: dict[str, schema.Target]) -> dict[str, pa.DataType]:
    """The Arrow type each CSV column is read as: the destination column's (by its base type), else text."""
    by_base = transform_io.arrow_schema(
        tuple(
            Column(n, targets[n].base_oid, "") if n in targets else Column(n, schema.TEXT, "text")
            for n in names
        )
    )
    return {n: by_base[n] for n in names}


def build_file_plan(
    spec: TransferSpec,
    conn: psycopg.Connection[Any],
    layouts: list[FileLayout],
    dest: Relation,
    targets: dict[str, schema.Target],
) -> TransferPlan:
    readable = [layout for layout in layouts if layout.fields is not None]
    if spec.key_min is not None or spec.key_max is not None:
        raise TransferConfigError(
            "key_min/key_max select key ranges of a table; files have no key: remove them."
        )
    if readable:
        names = readable[0].names
        for layout in readable[1:]:
            if set(layout.names) != set(names):
                raise TransferConfigError(
                    f"{layout.label} has the columns {layout.names} but {readable[0].label} has {names}: every "
                    "file of one transfer needs the same column names (in any order)."
                )
    else:  # nothing to read: the destination's columns, so every write mode still prepares normally
        names = [c.name for c in writable_columns(dest)]
    first_types = {f.name: f.type for f in readable[0].fields or ()} if readable else {}
    src_cols = tuple(_source_column(n, targets, first_types.get(n)) for n in names)

    def pass_through_format(dest_cols: tuple[Column, ...]) -> str:
        for layout in readable:
            check_types(layout, dest, targets)
        fields = [f for layout in readable for f in layout.fields or ()]
        return (
            BINARY
            if readable and all(pgbinary.supported(f.type, targets[f.name]) for f in fields)
            else CSV_COPY
        )

    # a transform's output is judged by the destination on load; nested values reach it as JSON text
    return complete_plan(
        spec,
        conn,
        dest,
        src_cols,
        FILE_POSITION,
        source_label="the files",
        pass_through_format=pass_through_format,
    )


def _source_column(name: str, targets: dict[str, schema.Target], arrow_type: pa.DataType | None) -> Column:
    """The column as the engine's transform path parses it: typed like the destination column."""
    if name in targets:
        target = targets[name].column
        return Column(name, target.type_oid, target.type_name)
    oid, type_name = schema.pg_oid_for(arrow_type) if arrow_type is not None else (schema.TEXT, "text")
    return Column(name, oid, type_name)


def check_types(layout: FileLayout, dest: Relation, targets: dict[str, schema.Target]) -> None:
    """Refuses the first column whose Arrow type the destination column cannot take unchanged."""
    for field in layout.fields or ():
        target = targets[field.name]
        if not schema.loadable(field.type, target):
            raise TransferConfigError(
                f"{layout.label}: column {field.name!r} is {field.type} in the file but {dest.label}.{field.name} "
                f"is {target.column.type_name}, which cannot take every value unchanged. Change the destination "
                "column, or convert the column when writing the file."
            )


def plan_destination(
    spec: TransferSpec, conn: psycopg.Connection[Any]
) -> tuple[Relation, dict[str, schema.Target]]:
    dest = resolve_destination(spec, conn)
    return dest, schema.targets(conn, dest.columns)

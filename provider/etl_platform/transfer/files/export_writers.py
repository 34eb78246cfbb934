"""Rows of an export routed to files: rotation every `rows_per_file` rows, Hive partition directories.

Each partition directory (`col=value/`, or the root without partition_by) has at most one open file.
A full file is closed and waits for the next commit; at most `max_open_files` files are open at once
(the least recently written one is closed first, so a partition can get a file shorter than
rows_per_file). A commit closes every open file and publishes them together: after a commit, every
row up to the commit's key is in a published file and no later row is.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from etl_platform.transfer.export_spec import FileFormat
from etl_platform.transfer.files.publish import ExportDirectory

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class _OpenFile:
    """One temporary file being written."""

    def __init__(self, directory: ExportDirectory, fmt: FileFormat, schema: pa.Schema, relative: str):
        self.relative = relative
        self.rows = 0
        self.tmp, self._handle = directory.open_tmp(fmt.suffix)
        self._stream: Any = None
        if fmt.kind == "parquet":
            compression = None if fmt.compression == "none" else fmt.compression
            # Dictionaries pay off for text (status, country, ...); for numbers and times they cost
            # about two thirds of the write time for little size.
            text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            self._writer: Any = pq.ParquetWriter(
                self._handle, schema, compression=compression, use_dictionary=text
            )
        else:
            sink: Any = pa.PythonFile(self._handle, mode="w")
            if fmt.compression != "none":
                sink = self._stream = pa.CompressedOutputStream(sink, fmt.compression)
            self._writer = pacsv.CSVWriter(
                sink, schema, write_options=pacsv.WriteOptions(include_header=True)
            )

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        if self._stream is not None:
            self._stream.close()
        self._handle.close()


class PartitionedFiles:
    def __init__(
        self,
        directory: ExportDirectory,
        fmt: FileFormat,
        schema: pa.Schema,
        rows_per_file: int,
        partition_by: str | None,
        max_open_files: int,
        next_index: dict[str, int],
    ):
        self.directory = directory
        self.fmt = fmt
        self.rows_per_file = rows_per_file
        self.partition_by = partition_by
        self.max_open_files = max_open_files
        self.next_index = dict(next_index)  # partition directory -> number of its next file
        self.file_schema = schema.remove(schema.get_field_index(partition_by)) if partition_by else schema
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()
        self.closed: list[_OpenFile] = []  # closed, waiting for the next commit

    def write(self, table: pa.Table) -> None:
        """Routes a chunk (all columns, partition column included) to its files."""
        table = table.select([*self.file_schema.names, *([self.partition_by] if self.partition_by else [])])
        for directory, rows in self._split(table):
            offset = 0
            while offset < rows.num_rows:
                current = self._file_for(directory)
                piece = rows.slice(offset, self.rows_per_file - current.rows)
                current.write(piece)
                offset += piece.num_rows
                if current.rows >= self.rows_per_file:
                    self._close(directory)

    def close_all(self) -> None:
        for directory in list(self._open):
            self._close(directory)

    def discard(self) -> None:
        """After a failure: close what is open without publishing (the temporary files are cleared on rerun)."""
        for current in self._open.values():
            with contextlib.suppress(Exception):
                current.close()
        self._open.clear()

    def _file_for(self, directory: str) -> _OpenFile:
        current = self._open.get(directory)
        if current is not None:
            self._open.move_to_end(directory)
            return current
        if len(self._open) >= self.max_open_files:
            self._close(next(iter(self._open)))
        index = self.next_index.get(directory, 0)
        self.next_index[directory] = index + 1
        name = f"part-{index:05d}{self.fmt.suffix}"
        current = _OpenFile(
            self.directory, self.fmt, self.file_schema, f"{directory}/{name}" if directory else name
        )
        self._open[directory] = current
        return current

    def _close(self, directory: str) -> None:
        current = self._open.pop(directory)
        current.close()
        self.closed.append(current)

    def _split(self, table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
        """(partition directory, its rows in key order) for each partition value in the chunk."""
        if self.partition_by is None:
            yield "", table
            return
        order = pc.sort_indices(table, sort_keys=[(self.partition_by, "ascending")])  # stable: key order kept
        ordered = table.take(order)
        keys = ordered.column(self.partition_by)
        codes = pc.fill_null(pc.dictionary_encode(keys).combine_chunks().indices, -1).to_numpy(
            zero_copy_only=False
        )
        bounds = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
        data = ordered.drop_columns([self.partition_by])
        for start, stop in itertools.pairwise(bounds):
            if stop > start:
                yield hive_directory(self.partition_by, keys[start].as_py()), data.slice(start, stop - start)


def hive_directory(column: str, value: Any) -> str:
    """`column=value` with the value percent-encoded (pyarrow, Spark and Hive decode it); NULL is Hive's marker."""
    if value is None:
        text = HIVE_NULL
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, bytes):
        text = value.hex()
    else:
        text = str(value)
    return f"{quote(column, safe='')}={quote(text, safe='') if value is not None else text}"

"""Rows of one Parquet file, taken in slices from a resumable position; one row group in memory at a time.

A position is "rg:<group>" (the start of a row group) or "rg:<group>+<row>" (part way into one), so a
resumed run re-reads at most the row group it stopped in. Positions assume the same file: replacing
a file with a differently laid out one between a failure and its retry is not detected.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl_platform.transfer.errors import TransferError
from etl_platform.transfer.files.locate import open_listed

_POSITION = re.compile(r"^rg:(\d+)(?:\+(\d+))?$")


def parse_position(position: str | None, label: str) -> tuple[int, int]:
    if position is None:
        return 0, 0
    match = _POSITION.match(position)
    if match is None:
        raise TransferError(
            f"{label}: checkpoint position {position!r} is not a Parquet position (rg:N[+M])."
        )
    return int(match.group(1)), int(match.group(2) or 0)


def format_position(group: int, row: int) -> str:
    return f"rg:{group}" if row == 0 else f"rg:{group}+{row}"


def open_parquet(fs: Any, path: str, label: str) -> tuple[Any, pq.ParquetFile]:
    """The open file and its reader; a missing or unreadable footer fails naming the file."""
    handle = open_listed(fs, path, label)
    try:
        return handle, pq.ParquetFile(handle)
    except Exception as exc:
        handle.close()
        raise TransferError(
            f"{label} is not a readable Parquet file ({type(exc).__name__}: {exc})."
        ) from None


class ParquetStream:
    def __init__(self, fs: Any, path: str, label: str, start: str | None):
        self.label = label
        self._handle, self._file = open_parquet(fs, path, label)
        meta = self._file.metadata
        self._group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.group, self.row = parse_position(start, label)
        self._table: pa.Table | None = None
        self._skip_finished_groups()

    @property
    def position(self) -> str:
        return format_position(self.group, self.row)

    @property
    def exhausted(self) -> bool:
        return self.group >= len(self._group_rows)

    def describe(self, start: str, end: str) -> str:
        g0, r0 = parse_position(start, self.label)
        g1, r1 = parse_position(end, self.label)
        if (g1, r1) == (g0 + 1, 0) and r0 == 0:
            return f"row group {g0}"
        return f"rows from row group {g0} row {r0} to row group {g1} row {r1}"

    def take(self, limit: int) -> pa.Table:
        """Up to `limit` rows from the current position on, crossing row groups if needed."""
        pieces: list[pa.Table] = []
        need = limit
        while need > 0 and not self.exhausted:
            table = self._current()
            piece = table.slice(self.row, need)
            pieces.append(piece)
            need -= piece.num_rows
            self.row += piece.num_rows
            self._skip_finished_groups()
        if not pieces:
            return self._file.schema_arrow.empty_table()
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)

    def _current(self) -> pa.Table:
        if self._table is None:
            try:
                self._table = self._file.read_row_group(self.group, use_threads=True)
            except Exception as exc:
                raise TransferError(
                    f"{self.label}: row group {self.group} could not be read ({type(exc).__name__}: {exc}); "
                    "the file is corrupt or truncated. Rows before it are committed; fix or replace the "
                    "file and rerun to continue from this row group."
                ) from None
        return self._table

    def _skip_finished_groups(self) -> None:
        while self.group < len(self._group_rows) and self.row >= self._group_rows[self.group]:
            self.group += 1
            self.row = 0
            self._table = None

    def close(self) -> None:
        self._table = None
        self._handle.close()

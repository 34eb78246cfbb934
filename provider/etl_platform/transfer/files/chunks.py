"""File chunks encoded as COPY data (binary or CSV) in a background thread, one chunk ahead of the COPY.

The destination's COPY is the slow side of a file load; reading a row group and encoding it (pyarrow
and numpy, which release the GIL) overlaps with it. At most two encoded chunks exist per file: the one
being written and the next, plus the row group the next one came from.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.files import pgbinary
from etl_platform.transfer.files.encode import normalize, to_copy_csv
from etl_platform.transfer.files.schema import Target
from etl_platform.transfer.sources.base import BLOCK_SIZE, Buffer, ChunkEnd
from etl_platform.transfer.spec import TransferSpec


class RowStream(Protocol):
    """Rows of one file from a resumable position (parquet_stream.ParquetStream, csv_stream.CsvStream)."""

    @property
    def position(self) -> str: ...

    @property
    def exhausted(self) -> bool: ...

    def take(self, limit: int) -> pa.Table: ...

    def describe(self, start: str, end: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EncodedChunk:
    payload: tuple[Buffer, ...]  # the COPY data, in pieces
    rows: int
    end_position: str
    exhausted: bool
    rows_named: str  # "file x.parquet row group 3": what where() tells the engine for its messages

    def blocks(self) -> Iterator[Buffer]:
        for piece in self.payload:
            view = memoryview(piece)
            for start in range(0, len(view), BLOCK_SIZE):
                yield view[start : start + BLOCK_SIZE]

    def end(self) -> ChunkEnd:
        return ChunkEnd(self.rows, self.end_position, self.exhausted)

    def where(self, lo: str | None) -> str:
        return self.rows_named


@dataclass(frozen=True)
class Encoding:
    """How a file's rows become COPY data: the plan's column order, the window, binary or which CSV."""

    label: str
    columns: tuple[str, ...]
    spec: TransferSpec
    for_transform: bool
    binary_targets: tuple[Target, ...] | None  # the columns' targets when the plan's COPY is binary

    def encode(self, table: pa.Table, where: str) -> tuple[tuple[Buffer, ...], int]:
        table = normalize(table.select(list(self.columns)), where)
        table = window_filter(table, self.spec)
        if self.binary_targets is not None:  # binary COPY needs its header and trailer even for no rows
            return pgbinary.encode(table, list(self.binary_targets)), table.num_rows
        if not table.num_rows:
            return (), 0
        return (to_copy_csv(table, for_transform=self.for_transform),), table.num_rows


def window_filter(table: pa.Table, spec: TransferSpec) -> pa.Table:
    """Rows in [window_start, window_end) of the incremental column; NULLs are outside every window."""
    if not spec.incremental_column or (spec.window_start is None and spec.window_end is None):
        return table
    column = table.column(spec.incremental_column)
    mask: Any = None
    if spec.window_start is not None:
        mask = pc.greater_equal(
            column, window_bound(spec.window_start, column.type, "window_start", spec.incremental_column)
        )
    if spec.window_end is not None:
        below = pc.less(
            column, window_bound(spec.window_end, column.type, "window_end", spec.incremental_column)
        )
        mask = below if mask is None else pc.and_(mask, below)
    return table.filter(mask)


def window_bound(value: Any, arrow_type: pa.DataType, setting: str, column: str) -> pa.Scalar:
    """A window bound as a scalar of the column's type; text without an offset is UTC for zoned columns."""
    scalar = pa.scalar(value) if isinstance(value, datetime | date | int | float) else pa.scalar(str(value))
    try:
        return scalar.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if (
            pa.types.is_timestamp(arrow_type)
            and arrow_type.tz is not None
            and pa.types.is_string(scalar.type)
        ):
            try:
                return scalar.cast(pa.timestamp(arrow_type.unit)).cast(arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    raise TransferConfigError(
        f"{setting} {value!r} cannot be compared with incremental_column {column!r} of type {arrow_type}."
    )


class Pipeline:
    """Encodes the chunks of one file from `start` in a thread, one chunk ahead of the consumer."""

    def __init__(
        self, open_stream: Callable[[], RowStream], encoding: Encoding, limit: int, start: str | None
    ):
        self.next_start = start
        self.limit = limit
        self._open = open_stream
        self._encoding = encoding
        self._items: queue.Queue[EncodedChunk | BaseException] = queue.Queue()
        self._permit = threading.Semaphore(1)  # build the next chunk only once the previous was taken
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="etl-file-encode", daemon=True)
        self._thread.start()

    def next(self) -> EncodedChunk:
        item = self._items.get()
        self._permit.release()
        if isinstance(item, BaseException):
            raise item
        self.next_start = item.end_position
        return item

    def _produce(self) -> None:
        stream: RowStream | None = None
        try:
            stream = self._open()
            while self._acquire():
                start = stream.position
                table = stream.take(self.limit)
                exhausted = stream.exhausted
                end = stream.position
                where = f"{self._encoding.label} {stream.describe(start, end)}"
                payload, rows = self._encoding.encode(table, where)
                del table
                self._items.put(EncodedChunk(payload, rows, end, exhausted, where))
                if exhausted:
                    return
        except BaseException as exc:
            self._items.put(exc)
        finally:
            if stream is not None:
                stream.close()

    def _acquire(self) -> bool:
        while not self._cancelled.is_set():
            if self._permit.acquire(timeout=0.1):
                return not self._cancelled.is_set()
        return False

    def close(self) -> None:
        self._cancelled.set()
        self._thread.join(timeout=60)

"""What to transfer: the user-facing options, validated on construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from etl_platform.common.durations import parse_duration
from etl_platform.transfer.errors import TransferConfigError


class WriteMode(StrEnum):
    APPEND = "append"
    TRUNCATE = "truncate"
    UPSERT = "upsert"
    DELETE_INSERT = "delete_insert"


class Strategy(StrEnum):
    """How truncate reaches the destination: `auto` swaps a freshly built table in where nothing
    depending on the table would be lost, `staged` always stages and replaces the rows in place."""

    AUTO = "auto"
    STAGED = "staged"


class TransformFormat(StrEnum):
    PANDAS = "pandas"
    ARROW = "arrow"


WindowBound = str | datetime | date | int | None


@dataclass(frozen=True)
class TransferSpec:
    """One transfer. Table names are "schema.table" or "table" (resolved on the search_path)."""

    destination_table: str
    source_table: str | None = None
    source_sql: str | None = None
    source_path: str | tuple[str, ...] | None = None  # files: one URL, a list, or a glob/prefix
    key_column: str | None = None
    chunk_rows: int = 100_000
    write_mode: WriteMode | str = WriteMode.APPEND
    conflict_columns: tuple[str, ...] | None = None
    incremental_column: str | None = None
    window_start: WindowBound = None
    window_end: WindowBound = None
    transform: Callable[[Any], Any] | None = None
    transform_format: TransformFormat | str = TransformFormat.PANDAS
    parallelism: int = 1
    key_min: str | int | None = None  # exclusive lower bound of the keys to move (mapped key ranges)
    key_max: str | int | None = None  # inclusive upper bound
    checkpoint_id: str | None = None
    checkpoint_schema: str = "etl_platform"
    strategy: Strategy | str = Strategy.AUTO
    lock_timeout: str = "5s"  # the longest a swap waits for its lock (readers queue behind it meanwhile)

    def __post_init__(self) -> None:
        if isinstance(self.source_path, list):
            object.__setattr__(self, "source_path", tuple(self.source_path))
        if sum(bool(s) for s in (self.source_table, self.source_sql, self.source_path)) != 1:
            raise TransferConfigError("Give exactly one of source_table, source_sql or source_path.")
        if self.source_sql and not self.key_column:
            raise TransferConfigError(
                "key_column is required with source_sql (no primary key to default to)."
            )
        if not self.destination_table:
            raise TransferConfigError("destination_table is required.")
        try:
            object.__setattr__(self, "write_mode", WriteMode(self.write_mode))
        except ValueError:
            raise TransferConfigError(
                f"write_mode {self.write_mode!r} is not one of {[m.value for m in WriteMode]}."
            ) from None
        try:
            object.__setattr__(self, "transform_format", TransformFormat(self.transform_format))
        except ValueError:
            raise TransferConfigError(
                f"transform_format {self.transform_format!r} is not one of "
                f"{[f.value for f in TransformFormat]}."
            ) from None
        try:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
        except ValueError:
            raise TransferConfigError(
                f"strategy {self.strategy!r} is not one of {[s.value for s in Strategy]}."
            ) from None
        object.__setattr__(self, "lock_timeout", parse_duration(self.lock_timeout, error=TransferConfigError))
        if not isinstance(self.chunk_rows, int) or self.chunk_rows < 1:
            raise TransferConfigError(f"chunk_rows must be a positive integer, got {self.chunk_rows!r}.")
        if not isinstance(self.parallelism, int) or not 1 <= self.parallelism <= 64:
            raise TransferConfigError(
                f"parallelism must be an integer from 1 to 64, got {self.parallelism!r}."
            )
        if self.transform is not None and not callable(self.transform):
            raise TransferConfigError("transform must be a callable taking and returning a DataFrame.")
        has_window = self.window_start is not None or self.window_end is not None
        if has_window and not self.incremental_column:
            raise TransferConfigError("window_start/window_end need incremental_column.")
        if self.window_start is not None and str(self.window_start) == str(self.window_end):
            raise TransferConfigError(
                f"window_start equals window_end ({self.window_start}): the window is empty. Airflow 3's "
                'schedule="@daily" gives zero-length data intervals; schedule incremental DAGs with '
                "CronDataIntervalTimetable, or set window_start/window_end."
            )
        if self.write_mode is WriteMode.DELETE_INSERT and not self.incremental_column:
            raise TransferConfigError(
                "write_mode 'delete_insert' replaces the rows of the incremental window: "
                "set incremental_column (and the window)."
            )
        if self.conflict_columns is not None:
            object.__setattr__(self, "conflict_columns", tuple(self.conflict_columns))
            if not self.conflict_columns:
                raise TransferConfigError("conflict_columns, when given, must name at least one column.")

    @property
    def source_label(self) -> str:
        if self.source_path:
            paths = (self.source_path,) if isinstance(self.source_path, str) else self.source_path
            return paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
        return self.source_table or "source_sql"

"""What each maintenance operation is asked to do: frozen, every check on construction, written once.

The operators build these in __init__ (parse time) from the values that are not templated, and again
in execute from the rendered ones; the engine functions build them from their arguments. Checks that
need the table (does the interval fit its key, are the columns its columns) are the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args

import psycopg

from etl_platform.common.protocols import LoggerLike
from etl_platform.partitions.ddl import DdlRunner, validate_lock_timeout
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Interval

RetentionMode = Literal["keep", "archive", "drop"]
IndexMethod = Literal["btree", "hash", "brin", "gin", "gist"]
RETENTION_MODES: tuple[RetentionMode, ...] = get_args(RetentionMode)
INDEX_METHODS: tuple[IndexMethod, ...] = get_args(IndexMethod)
# Bytes of a per-partition index name kept for the partition: 2 + "_" + 8 hex (see indexes.child_index_name).
MIN_PARTITION_ROOM = 11


@dataclass(frozen=True)
class RunnerSpec:
    """How DDL runs: lock_timeout per transaction, attempts when a lock is not granted, dry run."""

    lock_timeout: str = "2s"
    max_attempts: int = 5
    retry_backoff_seconds: float = 0.5
    dry_run: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lock_timeout", validate_lock_timeout(self.lock_timeout))
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise PartitionConfigError(f"max_attempts must be at least 1, got {self.max_attempts!r}.")
        backoff = self.retry_backoff_seconds
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
            raise PartitionConfigError(f"retry_backoff_seconds must be a number >= 0, got {backoff!r}.")

    def runner(self, conn: psycopg.Connection[Any], log: LoggerLike) -> DdlRunner:
        return DdlRunner(
            conn,
            log,
            lock_timeout=self.lock_timeout,
            attempts=self.max_attempts,
            backoff_seconds=self.retry_backoff_seconds,
            dry_run=self.dry_run,
        )


@dataclass(frozen=True)
class EnsureSpec:
    """Partitions from `start` (None: the current interval) through `premake` intervals past the current one."""

    table: str
    interval: str | int
    start: date | int | str | None = None
    premake: int = 3
    iv: Interval = field(init=False, repr=False, compare=False)  # `interval` parsed

    def __post_init__(self) -> None:
        _set(self, "iv", Interval.parse(self.interval))
        if self.start == "":  # a templated start renders as "" when unset; 0 is a real integer start
            _set(self, "start", None)
        if not isinstance(self.premake, int) or self.premake < 0:
            raise PartitionConfigError(f"premake must be a non-negative integer, got {self.premake!r}.")


@dataclass(frozen=True)
class DrainSpec:
    """Every row of the default partition into a proper partition; then drop the default if asked."""

    table: str
    interval: str | int
    drop_default: bool = False
    iv: Interval = field(init=False, repr=False, compare=False)  # `interval` parsed

    def __post_init__(self) -> None:
        _set(self, "iv", Interval.parse(self.interval))


@dataclass(frozen=True)
class RetentionSpec:
    """Partitions entirely before now - `retention` detached, then kept, archived or dropped.

    `retention` is read against the table (an interval for date keys, an integer for integer keys).
    """

    table: str
    retention: str | int
    mode: RetentionMode = "keep"
    archive_schema: str = "archive"
    concurrently: bool = True

    def __post_init__(self) -> None:
        if self.mode not in RETENTION_MODES:
            raise PartitionConfigError(
                f"mode {self.mode!r} is not one of {RETENTION_MODES}: retention mode {self.mode!r} is unknown."
            )


@dataclass(frozen=True)
class IndexSpec:
    """An index on every partition, built without blocking writes."""

    table: str
    index_name: str
    columns: tuple[str, ...]
    unique: bool = False
    method: IndexMethod = "btree"

    def __post_init__(self) -> None:
        _set(self, "columns", tuple(self.columns))
        if not self.columns:
            raise PartitionConfigError("columns must name at least one column to index.")
        if self.method not in INDEX_METHODS:
            raise PartitionConfigError(
                f"index method {self.method!r} is not one of {', '.join(INDEX_METHODS)}."
            )
        size = len(self.index_name.encode())
        if size > 63 - MIN_PARTITION_ROOM:
            raise PartitionConfigError(
                f"index_name {self.index_name!r} is {size} bytes; at most {63 - MIN_PARTITION_ROOM} "
                "leave room for the partition names of the per-partition indexes."
            )


def _set(spec: object, name: str, value: Any) -> None:
    object.__setattr__(spec, name, value)

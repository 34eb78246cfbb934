"""The source interface the engine drives; each kind of source implements it in its own module."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Self

import psycopg

from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.spec import TransferSpec

Buffer = bytes | bytearray | memoryview

# Bytes handed to the destination COPY at a time: psycopg's largest single write (MAX_BUFFER_SIZE);
# a larger bytearray it would cut into copies. (psycopg's QueuedLibpqWriter, a writer thread, was
# measured slower here: 3.55 s against 3.13 s for 2M rows, median of 4.)
BLOCK_SIZE = 128 * 1024


@dataclass(frozen=True)
class ChunkEnd:
    """What a chunk held, known once its data has been read."""

    rows: int
    last_key: str | None  # where the next chunk starts (JSON-safe text, stored in the checkpoint)
    exhausted: bool  # no rows after this chunk in its part


class SourceChunk(Protocol):
    """One chunk `(lo, hi]`: its COPY data, then its end."""

    def blocks(self) -> Iterator[Buffer]:
        """The chunk's rows as COPY data in the plan's format, in blocks of bounded size."""
        ...

    def end(self) -> ChunkEnd:
        """Valid after `blocks()` is exhausted."""
        ...

    def where(self, lo: str | None) -> str:
        """Names the chunk's rows in an error message ("id in (100, 200]", "file a.parquet row group 3"),
        also when reading stopped part way."""
        ...


class ChunkReader(Protocol):
    """Reads chunks of one part, inside the consistent view `Source.readers` opened."""

    def read(self, lo: str | None, hi: str | None, limit: int) -> SourceChunk: ...


class Source(Protocol):
    """A place rows come from. Used as a context manager: the control session lives inside it."""

    label: str  # names the source in messages and the summary

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: Any) -> None: ...

    def plan(self, spec: TransferSpec, destination: psycopg.Connection[Any]) -> TransferPlan:
        """Checks the source against the destination (names, types, keys) before any data moves."""
        ...

    def parts(self, plan: TransferPlan, parallelism: int) -> list[PartState]:
        """The resumable units: key ranges, or files."""
        ...

    def estimate_rows(self, plan: TransferPlan) -> int:
        """A cheap estimate for progress percentages and ETAs."""
        ...

    def readers(
        self, plan: TransferPlan, parts: list[PartState]
    ) -> AbstractContextManager[Sequence[ChunkReader]]:
        """One reader per part, all on one consistent view where the source can give one."""
        ...

    @property
    def consistency(self) -> str:
        """What the readers of the last `readers()` call guaranteed, in a few words (summary, docs)."""
        ...

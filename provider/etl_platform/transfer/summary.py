"""What a transfer reports: its summary, each chunk's result, where a resumed run starts."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from typing import Any

from etl_platform.transfer.checkpoint import PartState


@dataclass
class TransferSummary:
    rows: int
    rows_read: int
    rows_before_resume: int
    bytes: int
    chunks: int
    seconds: float
    rows_per_second: float
    peak_rss_mb: float
    resumed_from: Any
    copy_format: str
    write_mode: str
    strategy: str  # how the rows reached the destination: append, upsert, swap, staged
    strategy_note: str | None  # why (a fallback names what forced it)
    parallelism: int
    source: str
    destination: str
    consistency: str  # what the source's readers guaranteed (one snapshot, per-stream snapshots, ...)
    files: list[str]  # the files a file source read (empty for databases)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChunkResult:
    rows_read: int
    rows_written: int
    bytes: int
    last_key: str | None
    exhausted: bool


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resume_point(parts: list[PartState]) -> Any:
    started = [p for p in parts if p.last_key is not None or p.done]
    if not started:
        return None
    if len(parts) == 1:
        return parts[0].last_key
    return [p.last_key for p in parts]

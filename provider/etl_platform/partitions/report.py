"""What one maintenance call did: returned to XCom, logged, and counted in the metrics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from etl_platform.partitions.ddl import DdlRunner


@dataclass
class MaintenanceReport:
    table: str
    action: str
    created: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # detached by an earlier run, finished by this one
    moved: dict[str, int] = field(default_factory=dict)  # partition -> rows moved out of the default
    warnings: list[str] = field(default_factory=list)
    rows_moved: int = 0
    retries: int = 0
    dry_run: bool = False
    planned_sql: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def created_one(self, name: str, moved: int) -> None:
        """`create.create_partitions`' callback: a partition and the rows moved into it."""
        self.created.append(name)
        self.rows_moved += moved
        if moved:
            self.moved[name] = moved

    def finish(self, runner: DdlRunner, started: float) -> MaintenanceReport:
        """The runner's retries and (dry run) planned statements, and the time since `started`."""
        self.retries = runner.retries
        self.planned_sql = list(runner.planned) if runner.dry_run else []
        self.seconds = round(time.perf_counter() - started, 3)
        return self

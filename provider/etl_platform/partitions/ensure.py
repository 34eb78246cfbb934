"""Ensure: partitions from a start (back-fill) through `premake` intervals past the current one."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from psycopg import sql

from etl_platform.partitions import create
from etl_platform.partitions.catalog import PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.intervals import Bound, Interval
from etl_platform.partitions.report import MaintenanceReport
from etl_platform.partitions.spec import EnsureSpec


def ensure_partitions(
    runner: DdlRunner,
    table: str,
    interval: str | int,
    *,
    start: date | int | str | None = None,
    premake: int = 3,
    today: date | None = None,
) -> MaintenanceReport:
    """Partitions from `start` (back-fill) through `premake` intervals past the current one."""
    return run_ensure(runner, EnsureSpec(table, interval, start=start, premake=premake), today=today)


def run_ensure(runner: DdlRunner, spec: EnsureSpec, *, today: date | None = None) -> MaintenanceReport:
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, spec.table)
    iv = tbl.fit(spec.iv, spec.interval)
    report = MaintenanceReport(tbl.label, "ensure", dry_run=runner.dry_run)
    first, current = _first_and_current(runner, tbl, iv, spec.start, today)
    end = iv.shift(current, spec.premake + 1)
    missing: list[tuple[Bound, Bound]] = []
    for lo in iv.starts(first, end):
        hi = iv.next(lo)
        overlapping = tbl.covering(lo, hi)
        if overlapping:
            report.skipped.extend(p.label for p in overlapping if p.label not in report.skipped)
        else:
            missing.append((lo, hi))
    create.create_partitions(
        runner,
        tbl,
        iv,
        missing,
        holding=create.rows_to_move(runner, tbl, iv, missing),
        on_created=report.created_one,
    )
    return report.finish(runner, started)


def _first_and_current(
    runner: DdlRunner, tbl: PartitionedTable, iv: Interval, start: object, today: date | None
) -> tuple[Bound, Bound]:
    """The first interval to make and the current one: today's, or the highest key's (integer keys)."""
    if iv.temporal:
        current = iv.floor(today or datetime.now(UTC).date())
    else:
        top = runner.query(
            f"read the highest key of {tbl.label}",
            sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tbl.column), tbl.ident),
        )[0]
        current = iv.floor(int(top[0]) if top[0] is not None else tbl.bound(start))
    first = iv.floor(tbl.bound(start) if start is not None else current)
    return first, current

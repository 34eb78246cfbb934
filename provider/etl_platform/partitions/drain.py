"""Drain the default partition: every row into a proper partition, one committed range at a time."""

from __future__ import annotations

import time
from typing import Any

from psycopg import sql

from etl_platform.partitions import create
from etl_platform.partitions.catalog import Partition, PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Bound, Interval
from etl_platform.partitions.report import MaintenanceReport
from etl_platform.partitions.spec import DrainSpec


def drain_default(
    runner: DdlRunner, table: str, interval: str | int, *, drop_default: bool = False
) -> MaintenanceReport:
    """Moves every row of the default partition into a proper partition, one committed range at a time.

    Writers through the parent wait for one range's transaction at most, never for the whole drain
    (see `create`). Rows whose key is NULL can never leave the default: reported. With
    `drop_default`, an empty default is then dropped: without one, retention detaches CONCURRENTLY
    (and a row outside every partition is refused instead of parked: keep partitions premade).
    """
    return run_drain(runner, DrainSpec(table, interval, drop_default=drop_default))


def run_drain(runner: DdlRunner, spec: DrainSpec) -> MaintenanceReport:
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, spec.table)
    iv = tbl.fit(spec.iv, spec.interval)
    report = MaintenanceReport(tbl.label, "drain_default", dry_run=runner.dry_run)
    default = tbl.default
    if default is None:
        report.skipped.append(f"{tbl.label} has no default partition")
        return report.finish(runner, started)
    ranges = _held_ranges(runner, tbl, default, iv)
    create.create_partitions(
        runner, tbl, iv, ranges, holding={lo for lo, _ in ranges}, on_created=report.created_one
    )
    col = sql.Identifier(tbl.column)
    nulls = runner.query(
        f"count rows of {default.label} without a partition key",
        sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(default.ident, col),
    )[0][0]
    if nulls:
        report.warnings.append(
            f"{default.label} keeps {nulls} row(s) whose {tbl.column} is NULL: no range partition can "
            "hold them; fix or delete them."
        )
    if spec.drop_default:
        _drop_default(runner, tbl, default, report)
    return report.finish(runner, started)


def _held_ranges(
    runner: DdlRunner, tbl: PartitionedTable, default: Partition, iv: Interval
) -> list[tuple[Bound, Bound]]:
    """The ranges the default holds rows for; one that overlaps an existing partition is an error."""
    rows = runner.query(
        f"read the ranges held by {default.label}",
        sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL ORDER BY 1").format(
            create.bucket_of(tbl, iv), default.ident, sql.Identifier(tbl.column)
        ),
    )
    ranges: list[tuple[Bound, Bound]] = []
    for (lo,) in rows:
        hi = iv.next(lo)
        overlapping = tbl.covering(lo, hi)
        if overlapping:
            raise PartitionConfigError(
                f"rows of {default.label} in [{lo}, {hi}) overlap existing partitions "
                f"{[p.label for p in overlapping]} whose bounds do not follow the {iv.unit} interval."
            )
        ranges.append((lo, hi))
    return ranges


def _drop_default(
    runner: DdlRunner, tbl: PartitionedTable, default: Partition, report: MaintenanceReport
) -> None:
    """Drops the default partition if it is empty, checked under the locks that keep it so.

    DROP of a partition takes ACCESS EXCLUSIVE on the parent: waited for at most lock_timeout, then
    the default's NOWAIT (waited for between tries holding nothing, as in `create`), so writers wait
    at most lock_timeout for it, once.
    """

    def work(execute: Any) -> int:
        sets = create.row_sets(
            execute(
                [
                    sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(tbl.ident),
                    sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(default.ident),
                    sql.SQL("SELECT count(*) FROM {}").format(default.ident),
                ]
            )
        )
        left = int(sets[0][0][0]) if sets else 0
        if not left:
            execute(sql.SQL("DROP TABLE {}").format(default.ident))
        return left

    left = runner.transaction(
        f"drop the default partition {default.label}", work, before_retry=create.waiting_for(runner, default)
    )
    if left:
        report.warnings.append(f"{default.label} was not dropped: it holds {left} row(s).")
    else:
        report.dropped.append(default.label)

"""Retention: detach partitions past the cutoff (CONCURRENTLY where PostgreSQL allows), then keep,
archive or drop them; an interrupted detach is finished (FINALIZE) on the next run."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common.errors import sqlstate_of
from etl_platform.partitions import lookups
from etl_platform.partitions.catalog import Partition, PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError, PartitionError
from etl_platform.partitions.intervals import Bound
from etl_platform.partitions.report import MaintenanceReport
from etl_platform.partitions.retention_state import Pending, forget, record, unfinished
from etl_platform.partitions.spec import RetentionMode, RetentionSpec


def apply_retention(
    runner: DdlRunner,
    table: str,
    retention: str | int,
    *,
    mode: RetentionMode = "keep",
    archive_schema: str = "archive",
    concurrently: bool = True,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Detaches partitions that lie entirely before now - retention, then keeps, archives or drops them.

    Partitions an earlier run detached but did not finish are finished first, the way that run was
    configured. A pending concurrent detach is FINALIZEd only when its partition is past the cutoff.
    """
    spec = RetentionSpec(
        table, retention, mode=mode, archive_schema=archive_schema, concurrently=concurrently
    )
    return run_retention(runner, spec, now=now)


def run_retention(
    runner: DdlRunner, spec: RetentionSpec, *, now: datetime | None = None
) -> MaintenanceReport:
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, spec.table)
    cutoff = _cutoff(runner, tbl, spec.retention, now)
    report = MaintenanceReport(tbl.label, f"retention:{spec.mode}", dry_run=runner.dry_run)
    for pending in unfinished(runner, tbl):
        _finish_detached(runner, tbl, pending, report)
        report.resumed.append(pending.label)
    if cutoff is None:
        report.skipped.append(f"{tbl.label} holds no rows: no highest key to count the retention from")
        return report.finish(runner, started)
    old = [p for p in tbl.ranged if p.hi is not None and p.hi <= cutoff]  # type: ignore[operator]
    if spec.mode == "drop":
        _refuse_referenced(runner.conn, tbl.label, [tbl.oid, *(p.oid for p in old)])
    old = _unless_blocked(tbl, old, report)
    blocking = [p for p in old if not p.detach_pending]
    if spec.concurrently and blocking and tbl.default is not None:
        report.warnings.append(blocking_detach_warning(tbl, tbl.default, len(blocking)))
    for part in old:
        target = lookups.free_name(runner.conn, spec.archive_schema, part) if spec.mode == "archive" else None
        pending = Pending(
            part.oid, part.schema, part.name, spec.mode, spec.archive_schema if target else None, target
        )
        record(runner, tbl, pending)
        if part.detach_pending:  # an interrupted DETACH ... CONCURRENTLY
            _finalize(runner, tbl, part)
            report.finalized.append(part.label)
        else:
            _detach(runner, tbl, part, spec.concurrently)
        report.detached.append(part.label)
        _finish_detached(runner, tbl, pending, report)
    return report.finish(runner, started)


def _unless_blocked(
    tbl: PartitionedTable, old: list[Partition], report: MaintenanceReport
) -> list[Partition]:
    """`old`, or none of it while a partition inside the retention window has a pending detach."""
    recent_pending = [p for p in tbl.ranged if p.detach_pending and p not in old]
    for part in recent_pending:
        report.skipped.append(f"{part.label} has a pending detach but lies inside the retention window")
    if not recent_pending:
        return old
    # PostgreSQL refuses every other DETACH on the table while one is pending, and finishing a
    # detach of recent data is not retention's call.
    blocker = recent_pending[0].label
    report.skipped.extend(f"{p.label}: not detached while {blocker} has a pending detach" for p in old)
    report.warnings.append(
        f"{blocker} has an interrupted DETACH ... CONCURRENTLY but lies inside the retention window; "
        f"no partition of {tbl.label} can be detached until it is finished (ALTER TABLE ... DETACH "
        "PARTITION ... FINALIZE; ATTACH it again to keep it)."
    )
    return []


def blocking_detach_warning(tbl: PartitionedTable, default: Partition, count: int) -> str:
    """concurrently=True asked for a detach that blocks nobody; say that it did not happen and how to get it."""
    return (
        f"{tbl.label} has a default partition ({default.label}): PostgreSQL refuses DETACH PARTITION ... "
        f"CONCURRENTLY beside one, so {count} partition(s) were detached with a plain DETACH, which holds "
        "ACCESS EXCLUSIVE on the parent (writers and readers wait, at most lock_timeout per try). To keep "
        "detaches concurrent, drain the default and drop it (DrainDefaultPartitionOperator with "
        "drop_default=True) and keep partitions premade (EnsurePartitionsOperator)."
    )


def _finish_detached(
    runner: DdlRunner, tbl: PartitionedTable, pending: Pending, report: MaintenanceReport
) -> None:
    """Archive, drop or keep a detached partition and forget its record, in one transaction."""
    if pending.mode == "archive":
        _archive(runner, tbl, pending, report)
    elif pending.mode == "drop":
        _refuse_referenced(runner.conn, tbl.label, [pending.oid])

        def drop(execute: Any) -> None:
            execute(sql.SQL("DROP TABLE {}").format(pending.ident))
            execute(forget(tbl, pending))

        runner.transaction(f"drop {pending.label}", drop)
        report.dropped.append(pending.label)
    else:
        runner.run(f"keep {pending.label}", forget(tbl, pending))


def _archive(runner: DdlRunner, tbl: PartitionedTable, pending: Pending, report: MaintenanceReport) -> None:
    schema = pending.archive_schema or "archive"
    name = pending.archive_name or pending.name
    if lookups.name_taken(runner.conn, schema, name, pending):  # taken since the name was chosen
        name = lookups.free_name(runner.conn, schema, pending)

    def archive(execute: Any) -> None:
        execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        if name != pending.name:
            execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(pending.ident, sql.Identifier(name)))
        execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(pending.schema, name), sql.Identifier(schema)
            )
        )
        execute(forget(tbl, pending))

    runner.transaction(f"archive {pending.label}", archive)
    report.archived.append(f"{schema}.{name}")
    if name != pending.name:
        report.warnings.append(
            f"{schema}.{pending.name} already exists: {pending.label} was archived as {schema}.{name}"
        )


def _finalize(runner: DdlRunner, tbl: PartitionedTable, part: Partition) -> None:
    runner.autocommit(
        f"finish detaching {part.label}",
        sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(tbl.ident, part.ident),
    )


def _detach(runner: DdlRunner, tbl: PartitionedTable, part: Partition, concurrently: bool) -> None:
    if concurrently and tbl.default is None:  # PostgreSQL refuses CONCURRENTLY beside a default partition
        try:
            runner.autocommit(
                f"detach {part.label}",
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(tbl.ident, part.ident),
            )
        except (PartitionError, psycopg.errors.ObjectNotInPrerequisiteState):
            # A concurrent detach that timed out in its wait phase is left pending; finish it instead.
            if not lookups.detach_pending(runner.conn, part):
                raise
            _finalize(runner, tbl, part)
    else:
        runner.run(
            f"detach {part.label}",
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(tbl.ident, part.ident),
        )


def _cutoff(
    runner: DdlRunner, tbl: PartitionedTable, retention: str | int, now: datetime | None
) -> Bound | None:
    """The first key to keep; None when an integer-keyed table is empty (nothing to count back from)."""
    if tbl.temporal:
        return _date_cutoff(runner.conn, tbl, retention, now)
    if isinstance(retention, str) and retention.strip().isdigit():  # templated: rendered as text
        retention = int(retention.strip())
    if isinstance(retention, bool) or not isinstance(retention, int) or retention <= 0:
        raise PartitionConfigError(
            f"retention {retention!r} for integer-partitioned {tbl.label} must be a positive integer."
        )
    top = runner.query(
        f"read the highest key of {tbl.label}",
        sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tbl.column), tbl.ident),
    )[0]
    return None if top[0] is None else int(top[0]) - retention


def _date_cutoff(
    conn: psycopg.Connection[Any], tbl: PartitionedTable, retention: str | int, now: datetime | None
) -> Bound:
    """now - retention, read by the server as an interval (in a transaction of its own or a savepoint)."""
    if not isinstance(retention, str) or retention.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise PartitionConfigError(
            f"retention {retention!r} for {tbl.label} must be an interval with a unit, like '13 months'."
        )
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT (coalesce(%s::timestamptz, now()) - %s::interval)::date, %s::interval > interval '0'",
                (now, retention, retention),
            ).fetchone()
    except psycopg.Error as exc:
        raise PartitionConfigError(
            f"retention {retention!r} is not a PostgreSQL interval: {exc.diag.message_primary}",
            sqlstate=sqlstate_of(exc),
        ) from None
    assert row is not None
    if not row[1]:
        raise PartitionConfigError(f"retention {retention!r} must be a positive interval.")
    return row[0]  # type: ignore[no-any-return]


def _refuse_referenced(conn: psycopg.Connection[Any], label: str, oids: list[int]) -> None:
    refs = lookups.foreign_keys_to(conn, oids)
    if refs:
        named = ", ".join(f"{name} on {rel}" for name, rel in refs)
        raise PartitionConfigError(
            f"refusing to drop partitions of {label}: foreign keys reference it ({named}); "
            "use mode='archive' or 'keep', or drop the constraints first."
        )

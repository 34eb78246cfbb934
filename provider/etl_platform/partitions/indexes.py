"""Indexes on a partitioned table without blocking writes: ON ONLY the parent (invalid at first),
CONCURRENTLY per partition, then ATTACH each; the parent index is valid once all are attached."""

from __future__ import annotations

import hashlib
import time

from psycopg import sql

from etl_platform.common.retry import retry_with_backoff
from etl_platform.partitions import lookups
from etl_platform.partitions.catalog import Partition, PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError, PartitionError
from etl_platform.partitions.intervals import fit_name
from etl_platform.partitions.report import MaintenanceReport
from etl_platform.partitions.spec import IndexMethod, IndexSpec


def create_partitioned_index(
    runner: DdlRunner,
    table: str,
    index_name: str,
    columns: list[str],
    *,
    unique: bool = False,
    method: IndexMethod = "btree",
) -> MaintenanceReport:
    """ON ONLY parent (invalid at first), CONCURRENTLY per partition, ATTACH each: writers never block."""
    return run_index(runner, IndexSpec(table, index_name, tuple(columns), unique=unique, method=method))


def run_index(runner: DdlRunner, spec: IndexSpec) -> MaintenanceReport:
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, spec.table)
    report = MaintenanceReport(tbl.label, "create_index", dry_run=runner.dry_run)
    unknown = [c for c in spec.columns if c not in tbl.columns]
    if unknown:
        raise PartitionConfigError(f"index columns {unknown} are not columns of {tbl.label}.")
    kind = sql.SQL("UNIQUE INDEX") if spec.unique else sql.SQL("INDEX")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    parent_index = sql.Identifier(tbl.schema, spec.index_name)
    if not _existing_index(runner, tbl, spec):
        runner.run(
            f"create {spec.index_name} on only {tbl.label}",
            sql.SQL("CREATE {} {} ON ONLY {} USING {} ({})").format(
                kind, sql.Identifier(spec.index_name), tbl.ident, sql.SQL(spec.method), cols
            ),
        )
    for part in tbl.partitions:
        if lookups.has_attached_index(runner.conn, parent_index, part):  # e.g. ATTACH PARTITION made one
            report.skipped.append(part.label)
            continue
        child_name = child_index_name(part.name, spec.index_name)
        child_index = sql.Identifier(part.schema, child_name)
        build = sql.SQL("CREATE {} CONCURRENTLY {} ON {} USING {} ({})").format(
            kind, sql.Identifier(child_name), part.ident, sql.SQL(spec.method), cols
        )
        _build_valid_index(runner, part, child_name, child_index, build)
        report.indexed.append(f"{part.schema}.{child_name}")
        runner.run(
            f"attach {child_name}",
            sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(parent_index, child_index),
        )
    return report.finish(runner, started)


def child_index_name(partition: str, index: str) -> str:
    """`<partition>_<index>` within NAMEDATALEN - 1 = 63 bytes (PostgreSQL would cut it silently).

    When the partition's name must be shortened, a hash of it keeps sibling names apart.
    """
    suffix = f"_{index}"
    if len(partition.encode()) + len(suffix.encode()) <= 63:
        return partition + suffix
    digest = hashlib.sha1(partition.encode()).hexdigest()[:8]
    return fit_name(partition, f"_{digest}{suffix}")


def _existing_index(runner: DdlRunner, tbl: PartitionedTable, spec: IndexSpec) -> bool:
    """True when the parent index exists as asked; a same-named relation of another shape is an error.

    CREATE INDEX IF NOT EXISTS would silently keep a same-named index on other columns.
    """
    row = lookups.index_shape(
        runner.conn, tbl.oid, sql.Identifier(tbl.schema, spec.index_name).as_string(runner.conn)
    )
    if row is None:
        return False
    kind, same_table, am, is_unique, plain, cols, definition = row
    wanted = (True, spec.method, spec.unique, True, list(spec.columns))
    if kind not in ("i", "I") or (same_table, am, is_unique, plain, list(cols)) != wanted:
        raise PartitionConfigError(
            f"{tbl.schema}.{spec.index_name} already exists and is not the {'unique ' if spec.unique else ''}"
            f"{spec.method} index on ({', '.join(spec.columns)}) of {tbl.label} asked for: "
            f"{definition or 'a relation of kind ' + repr(kind)}. Choose another index_name or drop it."
        )
    return True


class _StillInvalid(Exception):
    """A build that returned but left the index invalid: dropped and built again on the next try."""


def _build_valid_index(
    runner: DdlRunner, part: Partition, name: str, index: sql.Identifier, build: sql.Composed
) -> None:
    """CREATE INDEX CONCURRENTLY until the index is valid; an invalid leftover (a build that failed or
    timed out, now or in an earlier run) is dropped before each try, never attached."""

    def attempt(number: int) -> None:
        state = lookups.index_state(runner.conn, part.schema, name)
        if state == "valid":
            return
        if state == "invalid":
            runner.autocommit(f"drop invalid {name}", sql.SQL("DROP INDEX CONCURRENTLY {}").format(index))
        runner.autocommit(f"index {part.label}", build, attempts=1)
        if not runner.dry_run and lookups.index_state(runner.conn, part.schema, name) != "valid":
            raise _StillInvalid

    def retried(number: int, delay: float, exc: BaseException) -> None:
        runner.retries += 1

    def give_up(number: int, exc: BaseException) -> BaseException:
        if isinstance(exc, _StillInvalid):
            return PartitionError(
                f"could not build a valid index {part.schema}.{name} after {number} attempts."
            )
        return exc

    retry_with_backoff(
        attempt,
        attempts=runner.attempts,
        backoff_seconds=runner.backoff_seconds,
        retry_on=(PartitionError, _StillInvalid),
        on_retry=retried,
        give_up=give_up,
    )

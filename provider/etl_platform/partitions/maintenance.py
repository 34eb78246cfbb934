"""Partition maintenance without long locks: ensure, drain the default, retention, indexes.

- New partitions are built standalone with a CHECK constraint matching their bound, then ATTACHed:
  the parent gets SHARE UPDATE EXCLUSIVE (writers keep writing), never ACCESS EXCLUSIVE.
- Rows that sit in the default partition for a new range are moved into it in the same short
  transaction, so they never block maintenance (pg_partman's most reported failure).
- Old partitions are detached CONCURRENTLY where PostgreSQL allows it; an interrupted concurrent
  detach is finished (FINALIZE) on the next run.
- Indexes are built ON ONLY the parent, CONCURRENTLY per partition, then attached.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.partitions.catalog import Partition, PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError, PartitionError
from etl_platform.partitions.intervals import Bound, Interval, partition_name

RETENTION_MODES = ("keep", "archive", "drop")


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
    rows_moved: int = 0
    retries: int = 0
    dry_run: bool = False
    planned_sql: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """Bounds of timestamptz partitions are midnight UTC: the session must read them that way."""
    conn.execute("SET TimeZone = 'UTC'")
    conn.commit()


# -- ensure --------------------------------------------------------------------------------------


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
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, table)
    iv = _interval_for(tbl, interval)
    if not isinstance(premake, int) or premake < 0:
        raise PartitionConfigError(f"premake must be a non-negative integer, got {premake!r}.")
    report = MaintenanceReport(tbl.label, "ensure", dry_run=runner.dry_run)
    if iv.temporal:
        current = iv.floor(today or datetime.utcnow().date())
        first = iv.floor(_as_bound(start, tbl) if start is not None else current)
    else:
        top = runner.query(
            f"read the highest key of {tbl.label}",
            sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tbl.column), tbl.ident),
        )[0]
        current = iv.floor(int(top[0]) if top[0] is not None else _as_bound(start, tbl))
        first = iv.floor(_as_bound(start, tbl) if start is not None else current)
    end = iv.shift(current, premake + 1)
    for lo in iv.starts(first, end):
        hi = iv.next(lo)
        overlapping = tbl.covering(lo, hi)
        if overlapping:
            report.skipped.extend(p.label for p in overlapping if p.label not in report.skipped)
            continue
        name, moved = _create_partition(runner, tbl, iv, lo, hi)
        report.created.append(name)
        report.rows_moved += moved
    return _finish(report, runner, started)


def _create_partition(
    runner: DdlRunner, tbl: PartitionedTable, iv: Interval, lo: Bound, hi: Bound
) -> tuple[str, int]:
    """Standalone table + CHECK, rows moved out of the default, ATTACH; one short transaction."""
    name = partition_name(tbl.name, iv, lo)
    child = sql.Identifier(tbl.schema, name)
    check = sql.Identifier(f"{name[:50]}_bound")
    col = sql.Identifier(tbl.column)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in tbl.columns)
    lo_lit, hi_lit = _bound_literal(tbl, lo), _bound_literal(tbl, hi)
    default = tbl.default

    def work(execute: Any) -> int:
        if default is not None:
            # Writers must not route a row for this range into the default partition meanwhile: a row
            # routed before the ATTACH would be rejected by the default's new constraint after it. So
            # inserts through the parent wait (briefly) for this transaction; reads never do.
            execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tbl.ident))
            execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(default.ident))
        execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED "
                "INCLUDING STORAGE INCLUDING COMMENTS)"
            ).format(child, tbl.ident)
        )
        execute(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({col} IS NOT NULL AND {col} >= {} AND {col} < {})"
            ).format(child, check, lo_lit, hi_lit, col=col)
        )
        moved = 0
        if default is not None:
            cur = execute(
                sql.SQL(
                    "WITH moved AS (DELETE FROM {d} WHERE {col} >= {lo} AND {col} < {hi} RETURNING {cols}) "
                    "INSERT INTO {child} ({cols}) SELECT {cols} FROM moved"
                ).format(d=default.ident, col=col, lo=lo_lit, hi=hi_lit, cols=cols, child=child)
            )
            moved = max(cur.rowcount, 0)
        if tbl.owner:
            execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(child, sql.Identifier(tbl.owner)))
        execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                tbl.ident, child, lo_lit, hi_lit
            )
        )
        execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, check))
        _copy_grants(execute, tbl, child)
        return moved

    moved = runner.transaction(f"create partition {tbl.schema}.{name}", work)
    return f"{tbl.schema}.{name}", int(moved or 0)


def _copy_grants(execute: Any, tbl: PartitionedTable, child: sql.Identifier) -> None:
    grants = execute(
        sql.SQL(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type "
            "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = {} AND a.grantee <> c.relowner"
        ).format(sql.Literal(tbl.oid))
    ).fetchall()
    for grantee, privilege in grants:
        target = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), child, target))


# -- drain the default partition ----------------------------------------------------------------


def drain_default(runner: DdlRunner, table: str, interval: str | int) -> MaintenanceReport:
    """Moves every row of the default partition into a proper partition, one range per transaction."""
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, table)
    iv = _interval_for(tbl, interval)
    report = MaintenanceReport(tbl.label, "drain_default", dry_run=runner.dry_run)
    default = tbl.default
    if default is None:
        report.skipped.append(f"{tbl.label} has no default partition")
        return _finish(report, runner, started)
    col = sql.Identifier(tbl.column)
    bucket = (
        sql.SQL("date_trunc({}, {})::date").format(sql.Literal(iv.unit), col)
        if iv.temporal
        else sql.SQL("(floor({}::numeric / {}) * {})::bigint").format(
            col, sql.Literal(iv.step), sql.Literal(iv.step)
        )
    )
    rows = runner.query(
        f"read the ranges held by {default.label}",
        sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL ORDER BY 1").format(
            bucket, default.ident, col
        ),
    )
    for (lo,) in rows:
        hi = iv.next(lo)
        overlapping = tbl.covering(lo, hi)
        if overlapping:
            raise PartitionConfigError(
                f"rows of {default.label} in [{lo}, {hi}) overlap existing partitions "
                f"{[p.label for p in overlapping]} whose bounds do not follow the {iv.unit} interval."
            )
        name, moved = _create_partition(runner, tbl, iv, lo, hi)
        report.created.append(name)
        report.rows_moved += moved
    return _finish(report, runner, started)


# -- retention -----------------------------------------------------------------------------------


def apply_retention(
    runner: DdlRunner,
    table: str,
    retention: str | int,
    *,
    mode: str = "keep",
    archive_schema: str = "archive",
    concurrently: bool = True,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Detaches partitions that lie entirely before now - retention, then keeps, archives or drops them."""
    started = time.perf_counter()
    if mode not in RETENTION_MODES:
        raise PartitionConfigError(f"retention mode {mode!r} is not one of {RETENTION_MODES}.")
    tbl = load_partitioned_table(runner.conn, table)
    cutoff = _cutoff(runner, tbl, retention, now)
    report = MaintenanceReport(tbl.label, f"retention:{mode}", dry_run=runner.dry_run)
    old = [p for p in tbl.ranged if p.hi is not None and p.hi <= cutoff]  # type: ignore[operator]
    if mode == "drop":
        _refuse_referenced(runner.conn, tbl, old)
    for part in tbl.ranged:
        if part.detach_pending:  # an interrupted DETACH ... CONCURRENTLY
            runner.autocommit(
                f"finish detaching {part.label}",
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(tbl.ident, part.ident),
            )
            report.finalized.append(part.label)
    for part in old:
        if _holds_rows_from(runner, tbl, part, cutoff):
            report.skipped.append(f"{part.label} holds rows inside the retention window")
            continue
        if not part.detach_pending:
            _detach(runner, tbl, part, concurrently)
        report.detached.append(part.label)
        if mode == "archive":
            _archive(runner, part, archive_schema)
            report.archived.append(f"{archive_schema}.{part.name}")
        elif mode == "drop":
            _drop(runner, part)
            report.dropped.append(part.label)
    return _finish(report, runner, started)


def _archive(runner: DdlRunner, part: Partition, schema: str) -> None:
    def work(execute: Any) -> None:
        execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(part.ident, sql.Identifier(schema)))

    runner.transaction(f"archive {part.label}", work)


def _drop(runner: DdlRunner, part: Partition) -> None:
    runner.transaction(f"drop {part.label}", _executes(sql.SQL("DROP TABLE {}").format(part.ident)))


def _detach(runner: DdlRunner, tbl: PartitionedTable, part: Partition, concurrently: bool) -> None:
    if concurrently and tbl.default is None:  # PostgreSQL refuses CONCURRENTLY beside a default partition
        try:
            runner.autocommit(
                f"detach {part.label}",
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(tbl.ident, part.ident),
            )
        except (PartitionError, psycopg.errors.ObjectNotInPrerequisiteState):
            # A concurrent detach that timed out in its wait phase is left pending; finish it instead.
            if not _detach_pending(runner.conn, part):
                raise
            runner.autocommit(
                f"finish detaching {part.label}",
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(tbl.ident, part.ident),
            )
    else:
        runner.transaction(
            f"detach {part.label}",
            _executes(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(tbl.ident, part.ident)),
        )


def _detach_pending(conn: psycopg.Connection[Any], part: Partition) -> bool:
    row = conn.execute(
        "SELECT bool_or(inhdetachpending) FROM pg_inherits WHERE inhrelid = %s", (part.oid,)
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


def _cutoff(runner: DdlRunner, tbl: PartitionedTable, retention: str | int, now: datetime | None) -> Bound:
    conn = runner.conn
    if tbl.temporal:
        if not isinstance(retention, str):
            raise PartitionConfigError(
                f"retention {retention!r} for {tbl.label} must be an interval like '13 months'."
            )
        try:
            row = conn.execute(
                "SELECT (coalesce(%s::timestamptz, now()) - %s::interval)::date, %s::interval > interval '0'",
                (now, retention, retention),
            ).fetchone()
        except psycopg.Error as exc:
            conn.rollback()
            raise PartitionConfigError(
                f"retention {retention!r} is not a PostgreSQL interval: {exc.diag.message_primary}"
            ) from None
        conn.commit()
        assert row is not None
        if not row[1]:
            raise PartitionConfigError(f"retention {retention!r} must be a positive interval.")
        return row[0]  # type: ignore[no-any-return]
    if isinstance(retention, bool) or not isinstance(retention, int) or retention <= 0:
        raise PartitionConfigError(
            f"retention {retention!r} for integer-partitioned {tbl.label} must be a positive integer."
        )
    top = runner.query(
        f"read the highest key of {tbl.label}",
        sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tbl.column), tbl.ident),
    )[0]
    return (int(top[0]) if top[0] is not None else 0) - retention


def _holds_rows_from(runner: DdlRunner, tbl: PartitionedTable, part: Partition, cutoff: Bound) -> bool:
    row = runner.query(
        f"check {part.label} for recent rows",
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} >= {})").format(
            part.ident, sql.Identifier(tbl.column), _bound_literal(tbl, cutoff)
        ),
    )[0]
    return bool(row[0])


def _refuse_referenced(conn: psycopg.Connection[Any], tbl: PartitionedTable, parts: list[Partition]) -> None:
    oids = [tbl.oid, *(p.oid for p in parts)]
    refs = conn.execute(
        "SELECT DISTINCT conname, conrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = ANY(%s::oid[])",
        (oids,),
    ).fetchall()
    conn.commit()
    if refs:
        named = ", ".join(f"{name} on {rel}" for name, rel in refs)
        raise PartitionConfigError(
            f"refusing to drop partitions of {tbl.label}: foreign keys reference it ({named}); "
            "use mode='archive' or 'keep', or drop the constraints first."
        )


# -- indexes -------------------------------------------------------------------------------------


def create_partitioned_index(
    runner: DdlRunner,
    table: str,
    index_name: str,
    columns: list[str],
    *,
    unique: bool = False,
    method: str = "btree",
) -> MaintenanceReport:
    """ON ONLY parent (invalid at first), CONCURRENTLY per partition, ATTACH each: writers never block."""
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, table)
    report = MaintenanceReport(tbl.label, "create_index", dry_run=runner.dry_run)
    if not columns:
        raise PartitionConfigError("columns must name at least one column to index.")
    unknown = [c for c in columns if c not in tbl.columns]
    if unknown:
        raise PartitionConfigError(f"index columns {unknown} are not columns of {tbl.label}.")
    if method not in ("btree", "hash", "brin", "gin", "gist"):
        raise PartitionConfigError(f"index method {method!r} is not one of btree, hash, brin, gin, gist.")
    kind = sql.SQL("UNIQUE INDEX") if unique else sql.SQL("INDEX")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    parent_index = sql.Identifier(tbl.schema, index_name)

    def create_parent(execute: Any) -> None:
        execute(
            sql.SQL("CREATE {} IF NOT EXISTS {} ON ONLY {} USING {} ({})").format(
                kind, sql.Identifier(index_name), tbl.ident, sql.SQL(method), cols
            )
        )

    runner.transaction(f"create {index_name} on only {tbl.label}", create_parent)
    for part in tbl.partitions:
        if _has_attached_index(runner.conn, parent_index, part):  # e.g. ATTACH PARTITION made one already
            report.skipped.append(part.label)
            continue
        child_name = f"{part.name[: 62 - len(index_name)]}_{index_name}"[:63]
        child_index = sql.Identifier(part.schema, child_name)
        build = sql.SQL("CREATE {} CONCURRENTLY {} ON {} USING {} ({})").format(
            kind, sql.Identifier(child_name), part.ident, sql.SQL(method), cols
        )
        _build_valid_index(runner, part, child_name, child_index, build)
        report.indexed.append(f"{part.schema}.{child_name}")
        runner.transaction(
            f"attach {child_name}",
            _executes(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(parent_index, child_index)),
        )
    return _finish(report, runner, started)


def _bound_literal(tbl: PartitionedTable, value: Bound) -> sql.Composable:
    """A bound as a constant of the key's own type, so the CHECK constraint proves the partition bound."""
    return sql.SQL("{}::{}").format(
        sql.Literal(str(value)), sql.SQL(tbl.column_type)
    )  # type from format_type()


def _executes(statement: sql.Composed) -> Any:
    def work(execute: Any) -> None:
        execute(statement)

    return work


def _index_state(conn: psycopg.Connection[Any], schema: str, name: str) -> str:
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_index i ON i.indexrelid = c.oid WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    conn.commit()
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def _build_valid_index(
    runner: DdlRunner, part: Partition, name: str, index: sql.Identifier, build: sql.Composed
) -> None:
    """CREATE INDEX CONCURRENTLY until the index is valid; an invalid leftover (a build that failed or
    timed out, now or in an earlier run) is dropped before each try, never attached."""
    for attempt in range(1, runner.attempts + 1):
        state = _index_state(runner.conn, part.schema, name)
        if state == "valid":
            return
        if state == "invalid":
            runner.autocommit(f"drop invalid {name}", sql.SQL("DROP INDEX CONCURRENTLY {}").format(index))
        try:
            runner.autocommit(f"index {part.label}", build, attempts=1)
        except PartitionError:
            if attempt == runner.attempts:
                raise
            runner.retries += 1
            time.sleep(runner.backoff_seconds * 2 ** (attempt - 1))
            continue
        if runner.dry_run or _index_state(runner.conn, part.schema, name) == "valid":
            return
    raise PartitionError(
        f"could not build a valid index {part.schema}.{name} after {runner.attempts} attempts."
    )


def _has_attached_index(conn: psycopg.Connection[Any], parent_index: sql.Identifier, part: Partition) -> bool:
    row = conn.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
            "WHERE i.inhparent = to_regclass({}) AND x.indrelid = {})"
        ).format(sql.Literal(parent_index.as_string(conn)), sql.Literal(part.oid))
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


# -- helpers -------------------------------------------------------------------------------------


def _interval_for(tbl: PartitionedTable, interval: str | int) -> Interval:
    iv = Interval.parse(interval)
    if iv.temporal != tbl.temporal:
        raise PartitionConfigError(
            f"interval {interval!r} does not fit {tbl.label}, partitioned on {tbl.column} ({tbl.column_type})."
        )
    return iv


def _as_bound(value: Any, tbl: PartitionedTable) -> Bound:
    if value is None:
        return 0
    if tbl.temporal:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value)[:10])
        except ValueError:
            raise PartitionConfigError(f"start {value!r} is not a date (YYYY-MM-DD).") from None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PartitionConfigError(f"start {value!r} is not an integer.") from None


def _finish(report: MaintenanceReport, runner: DdlRunner, started: float) -> MaintenanceReport:
    report.retries = runner.retries
    report.planned_sql = list(runner.planned) if runner.dry_run else []
    report.seconds = round(time.perf_counter() - started, 3)
    return report

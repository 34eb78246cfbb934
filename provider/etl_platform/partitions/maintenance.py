"""Partition maintenance without long locks: ensure, drain the default, retention, indexes.

- New partitions are built standalone, then ATTACHed: the parent gets SHARE UPDATE EXCLUSIVE, never
  ACCESS EXCLUSIVE. Without a default partition writers never wait for maintenance.
- With a default partition, rows it holds for a new range are moved into it in the transaction that
  attaches it, so they never block maintenance (pg_partman's most reported failure). The locks are
  taken first (the parent's, then the default's NOWAIT), so a try that cannot get them gives up
  before it has changed anything and no writer waits longer than lock_timeout: see `create` for the
  order and why. Ranges with nothing to move are created several per transaction.
- Moving a row between partitions of the same table is not a change of the table: user triggers
  on the default partition are disabled for the move (and restored in the same transaction).
- Old partitions are detached CONCURRENTLY where PostgreSQL allows it (no default partition; with
  one, the report warns that the detach blocked writers); an interrupted concurrent detach is
  finished (FINALIZE) on the next run.
- Indexes are built ON ONLY the parent, CONCURRENTLY per partition, then attached.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common.retry import retry_with_backoff
from etl_platform.partitions import create
from etl_platform.partitions.catalog import Partition, PartitionedTable, load_partitioned_table
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError, PartitionError
from etl_platform.partitions.intervals import Bound, Interval, fit_name

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
        on_created=lambda name, moved: _created(report, name, moved),
    )
    return _finish(report, runner, started)


def _created(report: MaintenanceReport, name: str, moved: int) -> None:
    report.created.append(name)
    report.rows_moved += moved
    if moved:
        report.moved[name] = moved


# -- drain the default partition ----------------------------------------------------------------


def drain_default(
    runner: DdlRunner, table: str, interval: str | int, *, drop_default: bool = False
) -> MaintenanceReport:
    """Moves every row of the default partition into a proper partition, one committed range at a time.

    Writers through the parent wait for one range's transaction at most, never for the whole drain
    (see `create`). Rows whose key is NULL can never leave the default: reported. With
    `drop_default`, an empty default is then dropped: without one, retention detaches CONCURRENTLY
    (and a row outside every partition is refused instead of parked: keep partitions premade).
    """
    started = time.perf_counter()
    tbl = load_partitioned_table(runner.conn, table)
    iv = _interval_for(tbl, interval)
    report = MaintenanceReport(tbl.label, "drain_default", dry_run=runner.dry_run)
    default = tbl.default
    if default is None:
        report.skipped.append(f"{tbl.label} has no default partition")
        return _finish(report, runner, started)
    col = sql.Identifier(tbl.column)
    rows = runner.query(
        f"read the ranges held by {default.label}",
        sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL ORDER BY 1").format(
            create.bucket_of(tbl, iv), default.ident, col
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
    create.create_partitions(
        runner,
        tbl,
        iv,
        ranges,
        holding={lo for lo, _ in ranges},
        on_created=lambda name, moved: _created(report, name, moved),
    )
    nulls = runner.query(
        f"count rows of {default.label} without a partition key",
        sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(default.ident, col),
    )[0][0]
    if nulls:
        report.warnings.append(
            f"{default.label} keeps {nulls} row(s) whose {tbl.column} is NULL: no range partition can "
            "hold them; fix or delete them."
        )
    if drop_default:
        _drop_default(runner, tbl, default, report)
    return _finish(report, runner, started)


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


# -- retention -----------------------------------------------------------------------------------

# Detached-but-unfinished partitions are recorded here (in the parent's schema, where maintenance
# already creates tables) before the DETACH and forgotten in the transaction that archives or drops
# them, so a run that dies or fails in between is finished by the next one.
RETENTION_STATE = "etl_partition_retention"
_STATE_DDL = """CREATE TABLE IF NOT EXISTS {} (
    partition_oid oid PRIMARY KEY,
    parent_oid oid NOT NULL,
    partition text NOT NULL,
    mode text NOT NULL,
    archive_schema text,
    archive_name text,
    recorded_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class _Pending:
    """A detached partition to finish: where it is now and what the run that detached it wanted."""

    oid: int
    schema: str
    name: str
    mode: str
    archive_schema: str | None
    archive_name: str | None

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


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
    """Detaches partitions that lie entirely before now - retention, then keeps, archives or drops them.

    Partitions an earlier run detached but did not finish are finished first, the way that run was
    configured. A pending concurrent detach is FINALIZEd only when its partition is past the cutoff.
    """
    started = time.perf_counter()
    if mode not in RETENTION_MODES:
        raise PartitionConfigError(f"retention mode {mode!r} is not one of {RETENTION_MODES}.")
    tbl = load_partitioned_table(runner.conn, table)
    cutoff = _cutoff(runner, tbl, retention, now)
    report = MaintenanceReport(tbl.label, f"retention:{mode}", dry_run=runner.dry_run)
    for pending in _unfinished(runner, tbl):
        _finish_detached(runner, tbl, pending, report)
        report.resumed.append(pending.label)
    if cutoff is None:
        report.skipped.append(f"{tbl.label} holds no rows: no highest key to count the retention from")
        return _finish(report, runner, started)
    old = [p for p in tbl.ranged if p.hi is not None and p.hi <= cutoff]  # type: ignore[operator]
    if mode == "drop":
        _refuse_referenced(runner.conn, tbl, old)
    recent_pending = [p for p in tbl.ranged if p.detach_pending and p not in old]
    for part in recent_pending:
        report.skipped.append(f"{part.label} has a pending detach but lies inside the retention window")
    if recent_pending:
        # PostgreSQL refuses every other DETACH on the table while one is pending, and finishing a
        # detach of recent data is not retention's call.
        blocker = recent_pending[0].label
        report.skipped.extend(f"{p.label}: not detached while {blocker} has a pending detach" for p in old)
        report.warnings.append(
            f"{blocker} has an interrupted DETACH ... CONCURRENTLY but lies inside the retention window; "
            f"no partition of {tbl.label} can be detached until it is finished (ALTER TABLE ... DETACH "
            "PARTITION ... FINALIZE; ATTACH it again to keep it)."
        )
        old = []
    blocking = [p for p in old if not p.detach_pending]
    if concurrently and blocking and tbl.default is not None:
        report.warnings.append(blocking_detach_warning(tbl, tbl.default, len(blocking)))
    for part in old:
        target = _free_name(runner.conn, archive_schema, part) if mode == "archive" else None
        pending = _Pending(part.oid, part.schema, part.name, mode, archive_schema if target else None, target)
        _record(runner, tbl, pending)
        if part.detach_pending:  # an interrupted DETACH ... CONCURRENTLY
            _finalize(runner, tbl, part)
            report.finalized.append(part.label)
        else:
            _detach(runner, tbl, part, concurrently)
        report.detached.append(part.label)
        _finish_detached(runner, tbl, pending, report)
    return _finish(report, runner, started)


def blocking_detach_warning(tbl: PartitionedTable, default: Partition, count: int) -> str:
    """concurrently=True asked for a detach that blocks nobody; say that it did not happen and how to get it."""
    return (
        f"{tbl.label} has a default partition ({default.label}): PostgreSQL refuses DETACH PARTITION ... "
        f"CONCURRENTLY beside one, so {count} partition(s) were detached with a plain DETACH, which holds "
        "ACCESS EXCLUSIVE on the parent (writers and readers wait, at most lock_timeout per try). To keep "
        "detaches concurrent, drain the default and drop it (DrainDefaultPartitionOperator with "
        "drop_default=True) and keep partitions premade (EnsurePartitionsOperator)."
    )


def _state(tbl: PartitionedTable) -> sql.Identifier:
    return sql.Identifier(tbl.schema, RETENTION_STATE)


def _record(runner: DdlRunner, tbl: PartitionedTable, pending: _Pending) -> None:
    """Commits what is about to be detached and what should become of it, before the DETACH."""

    def work(execute: Any) -> None:
        execute(sql.SQL(_STATE_DDL).format(_state(tbl)))
        execute(
            sql.SQL(
                "INSERT INTO {} (partition_oid, parent_oid, partition, mode, archive_schema, archive_name) "
                "VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT (partition_oid) DO UPDATE SET "
                "mode = EXCLUDED.mode, archive_schema = EXCLUDED.archive_schema, "
                "archive_name = EXCLUDED.archive_name, recorded_at = now()"
            ).format(
                _state(tbl),
                *(
                    sql.Literal(v)
                    for v in (
                        pending.oid,
                        tbl.oid,
                        pending.label,
                        pending.mode,
                        pending.archive_schema,
                        pending.archive_name,
                    )
                ),
            )
        )

    runner.transaction(f"record the retention of {pending.label}", work)


def _unfinished(runner: DdlRunner, tbl: PartitionedTable) -> list[_Pending]:
    """Recorded partitions that are detached (not merely pending) and still exist."""
    conn = runner.conn
    row = conn.execute("SELECT to_regclass(%s)", (_state(tbl).as_string(conn),)).fetchone()
    conn.commit()
    if row is None or row[0] is None:
        return []
    rows = runner.query(
        f"read unfinished retention of {tbl.label}",
        sql.SQL(
            "SELECT s.partition_oid::int, n.nspname, c.relname, s.mode, s.archive_schema, s.archive_name, "
            "EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = s.partition_oid) "
            "FROM {} s LEFT JOIN pg_class c ON c.oid = s.partition_oid "
            "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.parent_oid = {} ORDER BY s.partition"
        ).format(_state(tbl), sql.Literal(tbl.oid)),
    )
    out, stale = [], []
    for oid, schema, name, mode, archive_schema, archive_name, attached in rows:
        if name is None:  # dropped meanwhile: nothing left to finish
            stale.append(oid)
        elif not attached:
            out.append(_Pending(oid, schema, name, mode, archive_schema, archive_name))
        # still attached: the DETACH never happened (or is pending); the normal pass decides
    if stale and not runner.dry_run:
        runner.transaction(
            f"forget dropped partitions of {tbl.label}",
            _executes(
                sql.SQL("DELETE FROM {} WHERE partition_oid = ANY({}::oid[])").format(
                    _state(tbl), sql.Literal(stale)
                )
            ),
        )
    return out


def _name_taken(conn: psycopg.Connection[Any], schema: str, name: str, part: Partition | _Pending) -> bool:
    """Another relation called `name` in the archive schema or in the partition's own (renamed there first)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace "
        "WHERE c.relname = %s AND ns.nspname IN (%s, %s) AND c.oid <> %s)",
        (name, schema, part.schema, part.oid),
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


def _free_name(conn: psycopg.Connection[Any], schema: str, part: Partition | _Pending) -> str:
    """The partition's name, or with a suffix (_1, _2, ...) when the archive schema already has it.

    Chosen before the DETACH: SET SCHEMA failing on a taken name would leave the table detached.
    """
    for n in range(0, 1000):
        name = part.name if n == 0 else fit_name(part.name, f"_{n}")
        if not _name_taken(conn, schema, name, part):
            return name
    raise PartitionError(f"no free archive name for {part.schema}.{part.name} in schema {schema}.")


def _finish_detached(
    runner: DdlRunner, tbl: PartitionedTable, pending: _Pending, report: MaintenanceReport
) -> None:
    """Archive, drop or keep a detached partition and forget its record, in one transaction."""
    forget = sql.SQL("DELETE FROM {} WHERE partition_oid = {}").format(_state(tbl), sql.Literal(pending.oid))
    if pending.mode == "archive":
        schema = pending.archive_schema or "archive"
        name = pending.archive_name or pending.name
        if _name_taken(runner.conn, schema, name, pending):  # taken since the name was chosen
            name = _free_name(runner.conn, schema, pending)

        def archive(execute: Any) -> None:
            execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            if name != pending.name:
                execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(pending.ident, sql.Identifier(name)))
            execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(pending.schema, name), sql.Identifier(schema)
                )
            )
            execute(forget)

        runner.transaction(f"archive {pending.label}", archive)
        report.archived.append(f"{schema}.{name}")
        if name != pending.name:
            report.warnings.append(
                f"{schema}.{pending.name} already exists: {pending.label} was archived as {schema}.{name}"
            )
    elif pending.mode == "drop":
        _refuse_referenced_oids(runner.conn, tbl.label, [pending.oid])

        def drop(execute: Any) -> None:
            execute(sql.SQL("DROP TABLE {}").format(pending.ident))
            execute(forget)

        runner.transaction(f"drop {pending.label}", drop)
        report.dropped.append(pending.label)
    else:
        runner.transaction(f"keep {pending.label}", _executes(forget))


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
            if not _detach_pending(runner.conn, part):
                raise
            _finalize(runner, tbl, part)
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


def _cutoff(
    runner: DdlRunner, tbl: PartitionedTable, retention: str | int, now: datetime | None
) -> Bound | None:
    """The first key to keep; None when an integer-keyed table is empty (nothing to count back from)."""
    conn = runner.conn
    if tbl.temporal:
        if not isinstance(retention, str) or retention.strip().lstrip("+-").replace(".", "", 1).isdigit():
            raise PartitionConfigError(
                f"retention {retention!r} for {tbl.label} must be an interval with a unit, like '13 months'."
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


def _refuse_referenced(conn: psycopg.Connection[Any], tbl: PartitionedTable, parts: list[Partition]) -> None:
    _refuse_referenced_oids(conn, tbl.label, [tbl.oid, *(p.oid for p in parts)])


def _refuse_referenced_oids(conn: psycopg.Connection[Any], label: str, oids: list[int]) -> None:
    refs = conn.execute(
        "SELECT DISTINCT conname, conrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = ANY(%s::oid[])",
        (oids,),
    ).fetchall()
    conn.commit()
    if refs:
        named = ", ".join(f"{name} on {rel}" for name, rel in refs)
        raise PartitionConfigError(
            f"refusing to drop partitions of {label}: foreign keys reference it ({named}); "
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
    if len(index_name.encode()) > 63 - _MIN_PARTITION_ROOM:
        raise PartitionConfigError(
            f"index_name {index_name!r} is {len(index_name.encode())} bytes; at most "
            f"{63 - _MIN_PARTITION_ROOM} leave room for the partition names of the per-partition indexes."
        )
    kind = sql.SQL("UNIQUE INDEX") if unique else sql.SQL("INDEX")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    parent_index = sql.Identifier(tbl.schema, index_name)
    exists = _check_existing_index(runner.conn, tbl, index_name, columns, unique=unique, method=method)
    if not exists:
        runner.transaction(
            f"create {index_name} on only {tbl.label}",
            _executes(
                sql.SQL("CREATE {} {} ON ONLY {} USING {} ({})").format(
                    kind, sql.Identifier(index_name), tbl.ident, sql.SQL(method), cols
                )
            ),
        )
    for part in tbl.partitions:
        if _has_attached_index(runner.conn, parent_index, part):  # e.g. ATTACH PARTITION made one already
            report.skipped.append(part.label)
            continue
        child_name = child_index_name(part.name, index_name)
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


_MIN_PARTITION_ROOM = 11  # bytes of a per-partition index name kept for the partition: 2 + "_" + 8 hex


def child_index_name(partition: str, index: str) -> str:
    """`<partition>_<index>` within NAMEDATALEN - 1 = 63 bytes (PostgreSQL would cut it silently).

    When the partition's name must be shortened, a hash of it keeps sibling names apart.
    """
    suffix = f"_{index}"
    if len(partition.encode()) + len(suffix.encode()) <= 63:
        return partition + suffix
    digest = hashlib.sha1(partition.encode()).hexdigest()[:8]
    return fit_name(partition, f"_{digest}{suffix}")


def _check_existing_index(
    conn: psycopg.Connection[Any],
    tbl: PartitionedTable,
    index_name: str,
    columns: list[str],
    *,
    unique: bool,
    method: str,
) -> bool:
    """True when the parent index exists as asked; a same-named relation of another shape is an error.

    CREATE INDEX IF NOT EXISTS would silently keep a same-named index on other columns.
    """
    qualified = sql.Identifier(tbl.schema, index_name).as_string(conn)
    row = conn.execute(
        "SELECT c.relkind, x.indrelid = %s, am.amname, x.indisunique, "
        "x.indexprs IS NULL AND x.indpred IS NULL AND x.indnatts = x.indnkeyatts, "
        "array(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n), "
        "pg_get_indexdef(c.oid) "
        "FROM pg_class c LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_am am ON am.oid = c.relam "
        "WHERE c.oid = to_regclass(%s)",
        (tbl.oid, qualified),
    ).fetchone()
    conn.commit()
    if row is None:
        return False
    kind, same_table, am, is_unique, plain, cols, definition = row
    wanted = (True, method, unique, True, list(columns))
    if kind not in ("i", "I") or (same_table, am, is_unique, plain, list(cols)) != wanted:
        raise PartitionConfigError(
            f"{tbl.schema}.{index_name} already exists and is not the {'unique ' if unique else ''}{method} "
            f"index on ({', '.join(columns)}) of {tbl.label} asked for: "
            f"{definition or 'a relation of kind ' + repr(kind)}. Choose another index_name or drop it."
        )
    return True


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

    def attempt(number: int) -> None:
        state = _index_state(runner.conn, part.schema, name)
        if state == "valid":
            return
        if state == "invalid":
            runner.autocommit(f"drop invalid {name}", sql.SQL("DROP INDEX CONCURRENTLY {}").format(index))
        runner.autocommit(f"index {part.label}", build, attempts=1)
        if not runner.dry_run and _index_state(runner.conn, part.schema, name) != "valid":
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


class _StillInvalid(Exception):
    """A build that returned but left the index invalid: dropped and built again on the next try."""


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

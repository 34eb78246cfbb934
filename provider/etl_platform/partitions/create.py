"""Creating range partitions while writers write: lock order, batches, rows moved out of the default once.

Who waits for whom (PostgreSQL 15). A writer inserting through the parent takes ROW EXCLUSIVE on the
parent and on the partition its row goes to; lock queues are FIFO, so a request that conflicts with
ROW EXCLUSIVE makes every later writer wait for as long as the request itself waits, and then for as
long as it is held. Per batch of new ranges, one transaction:

1. Without a default partition nothing needs to block anyone: CREATE TABLE ... LIKE, then ATTACH
   PARTITION, which takes SHARE UPDATE EXCLUSIVE on the parent (writers and readers go on; it waits
   at most lock_timeout for other DDL). The new table is empty, so ATTACH's validation scan is free.
2. With a default partition, the locks come first, before anything is changed:
   a. SHARE ROW EXCLUSIVE on the tables the parent's foreign keys reference (ATTACH takes it when it
      clones the constraints), waiting at most lock_timeout while holding nothing on the parent;
   b. SHARE ROW EXCLUSIVE on ONLY the parent, waiting at most lock_timeout. It conflicts with the
      writers' ROW EXCLUSIVE, which is the point: a writer that locked the parent before the ATTACH
      commits routes with the old partition descriptor, sends a row of the new range to the default
      and fails the default's new constraint; taking the parent's lock first makes those writers
      finish before, or wait and route afresh after. It does not conflict with readers. The parent
      before the default is the order every writer uses (parent, then partition), so no deadlock;
   c. ACCESS EXCLUSIVE on the default, NOWAIT. ATTACH needs it (it scans the default) and a reader
      of the parent holds ACCESS SHARE on the default for as long as its transaction lasts: waiting
      for it here would make every writer wait behind the parent lock we hold (the 0.4-0.7 s stalls
      of issue 12). NOWAIT gives up at once, the transaction rolls back having done nothing, and
      before the next try `DdlRunner.wait_for_lock` waits for the default (at most lock_timeout)
      holding no lock on the parent: writers to other partitions never queue behind that wait.
   Only then are rows counted, moved and the partitions attached; nothing after step c waits for a
   lock, so no retry ever happens after a move: rows leave the default exactly once, in the same
   transaction as the ATTACH that makes them visible again (moved rows committed into a table not
   yet attached would be invisible through the parent and outside its unique indexes meanwhile).
   A writer therefore waits at most for the parent lock's own wait (lock_timeout) plus what we do
   while holding it: a NOWAIT refusal (a round trip), or a batch, which is cut so that it takes
   about half of lock_timeout (timed as it goes). A range with rows to move is a batch of its own;
   its move is the one wait that grows with the data (a big default is drained range by range).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common.catalog import read_row
from etl_platform.common.durations import duration_seconds
from etl_platform.partitions.catalog import Partition, PartitionedTable
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Bound, Interval, fit_name, partition_name

# A batch's share of lock_timeout: writers behind the parent lock wait for the batch, so it is cut
# to about half the time they would wait anyway at worst, leaving the rest as headroom for a slow
# statement we cannot foresee.
BATCH_SHARE_OF_LOCK_TIMEOUT = 0.5
_TRIGGER_MODES = {"O": sql.SQL("ENABLE"), "A": sql.SQL("ENABLE ALWAYS"), "R": sql.SQL("ENABLE REPLICA")}

_CONTEXT = """
SELECT
  (SELECT coalesce(json_agg(DISTINCT conname || ' on ' || conrelid::regclass::text), '[]')
     FROM pg_constraint WHERE contype = 'f' AND confrelid = c.oid AND conparentid = 0),
  (SELECT coalesce(json_agg(DISTINCT jsonb_build_array(rn.nspname, r.relname)), '[]')
     FROM pg_constraint f JOIN pg_class r ON r.oid = f.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
     WHERE f.contype = 'f' AND f.conrelid = c.oid AND f.confrelid <> c.oid),
  (SELECT coalesce(json_agg(jsonb_build_array(
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type)), '[]')
     FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner),
  c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
FROM pg_class c WHERE c.oid = %s
"""


@dataclass(frozen=True)
class TableContext:
    """What every new partition needs from the parent, read in one round trip."""

    referencing: list[str]  # foreign keys on other tables that reference this one
    referenced: list[tuple[str, str]]  # tables this one's foreign keys reference
    grants: list[tuple[str, str]]  # (grantee or PUBLIC, privilege) besides the owner's
    set_owner: bool  # the parent's owner is not who creates the partitions


def read_context(conn: psycopg.Connection[Any], tbl: PartitionedTable) -> TableContext:
    row = read_row(conn, _CONTEXT, (tbl.oid,))
    assert row is not None, tbl.label
    referencing, referenced, grants, set_owner = (json.loads(v) if isinstance(v, str) else v for v in row)
    return TableContext(
        sorted(referencing),
        [(s, n) for s, n in referenced],
        [(g, p) for g, p in grants],
        bool(set_owner),
    )


def bucket_of(tbl: PartitionedTable, iv: Interval) -> sql.Composable:
    """The start of the interval a row's key falls in, computed by the server (TimeZone is UTC)."""
    col = sql.Identifier(tbl.column)
    if iv.temporal:
        return sql.SQL("date_trunc({}, {})::date").format(sql.Literal(iv.unit), col)
    return sql.SQL("(floor({}::numeric / {}) * {})::bigint").format(
        col, sql.Literal(iv.step), sql.Literal(iv.step)
    )


def rows_by_range(
    tbl: PartitionedTable, default: Partition, iv: Interval, lo: Bound, hi: Bound
) -> sql.Composed:
    """Row counts of the default per interval start within [lo, hi): one scan."""
    col = sql.Identifier(tbl.column)
    return sql.SQL("SELECT {b}, count(*) FROM {d} WHERE {c} >= {lo} AND {c} < {hi} GROUP BY 1").format(
        b=bucket_of(tbl, iv), d=default.ident, c=col, lo=bound_literal(tbl, lo), hi=bound_literal(tbl, hi)
    )


def rows_to_move(
    runner: DdlRunner, tbl: PartitionedTable, iv: Interval, ranges: list[tuple[Bound, Bound]]
) -> set[Bound]:
    """The new ranges the default holds rows for, to plan batches: one scan, or nothing known when the
    default is locked right now (NOWAIT: planning never queues; each batch counts again under its locks)."""
    default = tbl.default
    if default is None or not ranges:
        return set()
    conn = runner.conn
    try:
        runner.transactions += 1
        runner.round_trips += 3
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE NOWAIT").format(default.ident))
            rows = conn.execute(rows_by_range(tbl, default, iv, ranges[0][0], ranges[-1][1])).fetchall()
    except psycopg.errors.LockNotAvailable:
        return set()
    return {lo for lo, _ in rows}


def bound_literal(tbl: PartitionedTable, value: Bound) -> sql.Composable:
    """A bound as a constant of the key's own type, so a CHECK constraint proves the partition bound."""
    return sql.SQL("{}::{}").format(sql.Literal(str(value)), sql.SQL(tbl.column_type))  # format_type()


def create_partitions(
    runner: DdlRunner,
    tbl: PartitionedTable,
    iv: Interval,
    ranges: list[tuple[Bound, Bound]],
    *,
    holding: set[Bound],
    on_created: Callable[[str, int], None],
) -> None:
    """Creates (and attaches) a partition per range, in batches; `holding`: ranges the default had rows
    for when planned (each gets a transaction of its own; the transaction counts again under its locks).
    """
    if not ranges:
        return
    context = read_context(runner.conn, tbl)
    if holding and context.referencing and tbl.default is not None:
        _refuse_move(tbl, tbl.default, context)
    budget = duration_seconds(runner.lock_timeout) * BATCH_SHARE_OF_LOCK_TIMEOUT
    per_range = budget  # the first batch is one range: how long one takes (ATTACH scans the default) is
    # not known before, and a guess too low would hold writers for many ranges at once
    pending = list(ranges)
    while pending:
        if pending[0][0] in holding:
            batch = pending[:1]
        else:
            size = len(pending) if tbl.default is None else max(1, int(budget / per_range))
            batch = []
            for lo_hi in pending[:size]:
                if lo_hi[0] in holding:
                    break
                batch.append(lo_hi)
        del pending[: len(batch)]
        moved = _create_batch(runner, tbl, iv, batch, context)
        if not any(moved.values()):  # a move's time says nothing about the next empty range's
            per_range = max(runner.last_try_seconds / len(batch), 0.001)
        for lo, _ in batch:
            on_created(f"{tbl.schema}.{partition_name(tbl.name, iv, lo)}", moved.get(lo, 0))


def _create_batch(
    runner: DdlRunner,
    tbl: PartitionedTable,
    iv: Interval,
    batch: list[tuple[Bound, Bound]],
    context: TableContext,
) -> dict[Bound, int]:
    default = tbl.default
    names = ", ".join(partition_name(tbl.name, iv, lo) for lo, _ in batch)
    what = f"create partition{'s' if len(batch) > 1 else ''} {tbl.schema}.{names}"

    def work(execute: Any) -> dict[Bound, int]:
        counts: dict[Bound, int] = {}
        triggers: list[tuple[str, str]] = []
        if default is not None:
            counts, triggers = _lock_and_count(execute, tbl, default, iv, batch, context)
            if any(counts.values()) and context.referencing:
                _refuse_move(tbl, default, context)
        execute(_statements(tbl, iv, batch, counts, triggers, context))
        return counts

    wait = None if default is None else waiting_for(runner, default)
    counts: dict[Bound, int] = runner.transaction(what, work, before_retry=wait)
    return counts


def waiting_for(runner: DdlRunner, default: Partition) -> Callable[[], None]:
    """Between tries: wait for the default's ACCESS EXCLUSIVE (at most lock_timeout) holding no other
    lock, so the next try's NOWAIT finds it free; writers to other partitions never queue behind it."""
    probe = sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(default.ident)

    def wait() -> None:
        runner.wait_for_lock(f"wait for {default.label}", probe)

    return wait


def _lock_and_count(
    execute: Any,
    tbl: PartitionedTable,
    default: Partition,
    iv: Interval,
    batch: list[tuple[Bound, Bound]],
    context: TableContext,
) -> tuple[dict[Bound, int], list[tuple[str, str]]]:
    """Steps a-c of the module's docstring, then what the default holds for the batch and its triggers:
    one round trip."""
    statements: list[sql.Composable] = [
        sql.SQL("LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(s, n))
        for s, n in context.referenced
    ]
    statements += [
        sql.SQL("LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE").format(tbl.ident),
        sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(default.ident),
        rows_by_range(tbl, default, iv, batch[0][0], batch[-1][1]),
        sql.SQL(
            "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = {} AND NOT tgisinternal "
            "AND tgenabled <> 'D' ORDER BY tgname"
        ).format(sql.Literal(default.oid)),
    ]
    cur = execute(statements)
    sets = row_sets(cur)
    wanted = {lo for lo, _ in batch}
    counts = {lo: int(n) for lo, n in sets[0] if lo in wanted} if sets else {}
    triggers = [(name, mode) for name, mode in sets[1]] if len(sets) > 1 else []
    return counts, triggers


def row_sets(cur: psycopg.Cursor[Any]) -> list[list[tuple[Any, ...]]]:
    """The rows of every result set that has rows (LOCK and SET have none)."""
    out = []
    while True:
        if cur.description is not None:
            out.append(cur.fetchall())
        if not cur.nextset():
            return out


def _statements(
    tbl: PartitionedTable,
    iv: Interval,
    batch: list[tuple[Bound, Bound]],
    counts: dict[Bound, int],
    triggers: list[tuple[str, str]],
    context: TableContext,
) -> list[sql.Composable]:
    """The batch's DDL, sent in one round trip: per range CREATE TABLE ... LIKE, rows moved in (behind a
    CHECK matching the bound, so ATTACH need not scan them), ATTACH, owner and grants."""
    default = tbl.default
    out: list[sql.Composable] = []
    moving = [lo for lo, _ in batch if counts.get(lo)]
    if moving and default is not None:
        # A row changing partition is not a change of the table: the default's user triggers stay quiet.
        out += [
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(default.ident, sql.Identifier(name))
            for name, _ in triggers
        ]
    for lo, hi in batch:
        out += _range_statements(tbl, iv, lo, hi, lo in moving, context)
    if moving and default is not None:
        out += [
            sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                default.ident, _TRIGGER_MODES.get(mode, _TRIGGER_MODES["O"]), sql.Identifier(name)
            )
            for name, mode in triggers
        ]
    return out


def _range_statements(
    tbl: PartitionedTable, iv: Interval, lo: Bound, hi: Bound, moving: bool, context: TableContext
) -> list[sql.Composable]:
    """One range: CREATE TABLE ... LIKE, rows moved in behind a CHECK of the bound, ATTACH, owner, grants."""
    col = sql.Identifier(tbl.column)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in tbl.columns)
    default = tbl.default
    out: list[sql.Composable] = []
    name = partition_name(tbl.name, iv, lo)
    child = sql.Identifier(tbl.schema, name)
    lo_lit, hi_lit = bound_literal(tbl, lo), bound_literal(tbl, hi)
    out.append(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED "
            "INCLUDING STORAGE INCLUDING COMMENTS)"
        ).format(child, tbl.ident)
    )
    check = sql.Identifier(fit_name(name, "_bound"))
    if moving and default is not None:
        out.append(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({c} IS NOT NULL AND {c} >= {} AND {c} < {})"
            ).format(child, check, lo_lit, hi_lit, c=col)
        )
        out.append(
            sql.SQL(
                "WITH moved AS (DELETE FROM {d} WHERE {c} >= {lo} AND {c} < {hi} RETURNING {cols}) "
                "INSERT INTO {child} ({cols}) SELECT {cols} FROM moved"
            ).format(d=default.ident, c=col, lo=lo_lit, hi=hi_lit, cols=cols, child=child)
        )
    if context.set_owner and tbl.owner:
        out.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(child, sql.Identifier(tbl.owner)))
    out.append(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            tbl.ident, child, lo_lit, hi_lit
        )
    )
    if moving:
        out.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, check))
    for grantee, privilege in context.grants:
        target = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        out.append(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), child, target))
    return out


def _refuse_move(tbl: PartitionedTable, default: Partition, context: TableContext) -> None:
    """Foreign keys that reference the table would see moved rows deleted (ON DELETE CASCADE would
    delete the referencing rows), and their system triggers cannot be disabled without superuser."""
    raise PartitionConfigError(
        f"{default.label} holds rows for a new partition of {tbl.label}, but foreign keys reference "
        f"the table ({', '.join(context.referencing)}): moving the rows would fire their ON DELETE actions. "
        "Move the rows yourself or drop the constraints first."
    )

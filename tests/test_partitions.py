"""Partition maintenance (etl_platform.partitions) against real PostgreSQL: ensure, drain, retention, indexes.

Every assertion reads the catalog (pg_inherits, pg_class, pg_index, pg_constraint, pg_locks) or counts rows;
nothing is mocked. Dates are fixed through `today=` / `now=` so the tests do not depend on the calendar.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from etl_platform.common.errors import is_terminal
from etl_platform.partitions import maintenance
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.errors import PartitionConfigError, PartitionError, PartitionLockTimeout
from harness import SchemaDb

TODAY = date(2026, 3, 15)  # a Sunday
NOW = datetime(2026, 3, 15, 12, 0)
Conn = psycopg.Connection[Any]


# -- helpers -------------------------------------------------------------------------------------


class RecordingLog:
    """A LoggerLike that keeps every message (thread-safe enough: list.append is atomic)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def info(self, event: Any, /, *args: Any) -> None:
        self.records.append(("info", str(event) % args if args else str(event)))

    def warning(self, event: Any, /, *args: Any) -> None:
        self.records.append(("warning", str(event) % args if args else str(event)))

    def messages(self, level: str | None = None) -> list[str]:
        return [m for lvl, m in self.records if level is None or lvl == level]


RunnerFactory = Callable[..., DdlRunner]


@pytest.fixture
def make_runner(dst_db: SchemaDb) -> Iterator[RunnerFactory]:
    """DdlRunner on a fresh (non-autocommit, like the hook's) connection prepared with prepare_session."""
    conns: list[Conn] = []

    def factory(statement_timeout: str = "30s", **kwargs: Any) -> DdlRunner:
        conn = psycopg.connect(dst_db.conninfo)
        conns.append(conn)
        # A guard so that a maintenance call stuck behind a lock fails the test instead of hanging it.
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(statement_timeout)))
        maintenance.prepare_session(conn)
        kwargs.setdefault("log", RecordingLog())
        kwargs.setdefault("backoff_seconds", 0.05)
        return DdlRunner(conn, **kwargs)

    yield factory
    for conn in conns:
        conn.close()


@pytest.fixture
def admin(dst_db: SchemaDb) -> Iterator[Conn]:
    """The test's own autocommit connection, reading timestamptz in UTC like the maintenance session."""
    conn = dst_db.connect()
    conn.execute("SET TimeZone = 'UTC'")
    yield conn
    conn.close()


def ident(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def regclass_text(conn: Conn, schema: str, name: str) -> str:
    return ident(schema, name).as_string(conn)


def create_parent(
    conn: Conn,
    schema: str,
    name: str,
    *,
    key: str = "ts",
    key_type: str = "timestamptz",
    default: bool | str = True,
    col: str = "w",
) -> None:
    """A range-partitioned table: PK (id, key), a CHECK, a secondary index on `col`, maybe a default."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE {t} (id bigserial, {key} {typ} NOT NULL, {col} int NOT NULL DEFAULT 0, "
            "seq int NOT NULL DEFAULT 0, amount numeric NOT NULL DEFAULT 1, "
            "CONSTRAINT {chk} CHECK (amount >= 0), PRIMARY KEY (id, {key})) PARTITION BY RANGE ({key})"
        ).format(
            t=ident(schema, name),
            key=sql.Identifier(key),
            typ=sql.SQL(key_type),
            col=sql.Identifier(col),
            chk=sql.Identifier(f"{name[:40]}_amount_nonneg"),
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(f"{name[:40]}_by_col"), ident(schema, name), sql.Identifier(col)
        )
    )
    if default:
        default_name = default if isinstance(default, str) else f"{name}_default"
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                ident(schema, default_name), ident(schema, name)
            )
        )


def add_partition(conn: Conn, schema: str, parent: str, name: str, lo: Any, hi: Any) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            ident(schema, name), ident(schema, parent), sql.Literal(lo), sql.Literal(hi)
        )
    )


def month(year: int, mon: int) -> date:
    return date(year, mon, 1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def add_months(conn: Conn, schema: str, parent: str, months: list[date]) -> None:
    for lo in months:
        add_partition(conn, schema, parent, f"{parent}_p{lo:%Y%m}", lo, next_month(lo))


def insert_at(
    conn: Conn, schema: str, table: str, values: list[Any], *, key: str = "ts", col: str = "w", w: int = 0
) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} ({}, {}) SELECT v, %s FROM unnest(%s) AS v").format(
            ident(schema, table), sql.Identifier(key), sql.Identifier(col)
        ),
        (w, values),
    )


def attached(conn: Conn, schema: str, table: str) -> list[tuple[str, str, bool]]:
    """(partition, bound as pg_get_expr shows it, detach pending) of every attached partition."""
    return conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, 0), i.inhdetachpending FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        (regclass_text(conn, schema, table),),
    ).fetchall()


def names(conn: Conn, schema: str, table: str) -> list[str]:
    return [row[0] for row in attached(conn, schema, table)]


def count(conn: Conn, schema: str, table: str, where: str = "TRUE", params: Any = None) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident(schema, table), sql.SQL(where)),  # type: ignore[arg-type]
        params,
    ).fetchone()
    assert row is not None
    return int(row[0])


def catalog_snapshot(conn: Conn, schema: str) -> list[tuple[Any, ...]]:
    """Every relation of the schema, its kind, partition bound and parent: 'nothing changed' compares these."""
    return conn.execute(
        "SELECT c.relname, c.relkind, c.relispartition, coalesce(pg_get_expr(c.relpartbound, 0), ''), "
        "coalesce(i.inhparent::regclass::text, ''), coalesce(i.inhdetachpending, false), "
        "coalesce(x.indisvalid, true) FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
        "LEFT JOIN pg_index x ON x.indexrelid = c.oid WHERE c.relnamespace = %s::regnamespace ORDER BY 1",
        (sql.Identifier(schema).as_string(conn),),
    ).fetchall()


def index_tree(conn: Conn, schema: str, table: str, index: str) -> tuple[bool | None, dict[str, bool]]:
    """(parent index valid?, {partition: its attached child index valid?})."""
    parent = conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
        (regclass_text(conn, schema, index),),
    ).fetchone()
    children = conn.execute(
        "SELECT t.relname, x.indisvalid FROM pg_inherits h JOIN pg_index x ON x.indexrelid = h.inhrelid "
        "JOIN pg_class t ON t.oid = x.indrelid WHERE h.inhparent = to_regclass(%s)",
        (regclass_text(conn, schema, index),),
    ).fetchall()
    return (parent[0] if parent else None), dict(children)


def child_index_name(partition: str, index: str) -> str:
    """The per-partition index name create_partitioned_index uses (how it recognises a leftover)."""
    return f"{partition[: 62 - len(index)]}_{index}"[:63]


def bound_text(lo: date | int, hi: date | int, key_type: str) -> str:
    def lit(value: date | int) -> str:
        if isinstance(value, int):
            return str(value)
        return {
            "date": f"{value}",
            "timestamp": f"{value} 00:00:00",
            "timestamptz": f"{value} 00:00:00+00",
        }[key_type]

    return f"FOR VALUES FROM ('{lit(lo)}') TO ('{lit(hi)}')"


def where_routed(conn: Conn, schema: str, table: str, key: str, value: Any) -> str:
    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT relname FROM pg_class WHERE oid = t.tableoid) FROM {} t WHERE {} = %s LIMIT 1"
        ).format(ident(schema, table), sql.Identifier(key)),
        (value,),
    ).fetchone()
    assert row is not None
    return str(row[0])


# -- ensure --------------------------------------------------------------------------------------


def _days(first: date, n: int, step: int = 1) -> list[date]:
    return [first + timedelta(days=i * step) for i in range(n)]


TEMPORAL_CASES = [
    # interval, key type, back-fill start, premake, expected partition starts (today = 2026-03-15)
    ("day", "timestamptz", date(2026, 3, 12), 2, _days(date(2026, 3, 12), 6)),
    ("week", "date", date(2026, 2, 25), 1, _days(date(2026, 2, 23), 4, 7)),
    ("month", "timestamp", date(2025, 12, 10), 2, [month(2025, 12)] + [month(2026, m) for m in range(1, 6)]),
    ("month", "timestamptz", "2025-12-10", 2, [month(2025, 12)] + [month(2026, m) for m in range(1, 6)]),
    ("year", "timestamptz", date(2024, 6, 1), 1, [date(y, 1, 1) for y in (2024, 2025, 2026, 2027)]),
]


def _suffix(unit: str, lo: date) -> str:
    if unit == "day":
        return f"p{lo:%Y%m%d}"
    if unit == "week":
        iso = lo.isocalendar()
        return f"p{iso.year}w{iso.week:02d}"
    return f"p{lo:%Y%m}" if unit == "month" else f"p{lo:%Y}"


def _next(unit: str, lo: date) -> date:
    if unit in ("day", "week"):
        return lo + timedelta(days=1 if unit == "day" else 7)
    return next_month(lo) if unit == "month" else date(lo.year + 1, 1, 1)


@pytest.mark.parametrize(
    ("unit", "key_type", "start", "premake", "starts"),
    TEMPORAL_CASES,
    ids=[f"{c[0]}-{c[1]}" for c in TEMPORAL_CASES],
)
def test_ensure_creates_every_temporal_interval_with_backfill(
    dst_db: SchemaDb,
    admin: Conn,
    make_runner: RunnerFactory,
    unit: str,
    key_type: str,
    start: Any,
    premake: int,
    starts: list[date],
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev", key_type=key_type, default=False)
    runner = make_runner()
    report = maintenance.ensure_partitions(
        runner, dst_db.table("ev"), unit, start=start, premake=premake, today=TODAY
    )
    expected = {f"ev_{_suffix(unit, lo)}": bound_text(lo, _next(unit, lo), key_type) for lo in starts}
    assert report.created == [f"{s}.{n}" for n in expected]  # in order, oldest first
    assert {n: b for n, b, _ in attached(admin, s, "ev")} == expected
    # Rows route to them: the first instant of each partition lands in it.
    insert_at(admin, s, "ev", starts)
    for lo in starts:
        assert where_routed(admin, s, "ev", "ts", lo) == f"ev_{_suffix(unit, lo)}"

    began = time.perf_counter()
    again = maintenance.ensure_partitions(
        runner, dst_db.table("ev"), unit, start=start, premake=premake, today=TODAY
    )
    print(f"ensure no-op ({unit}, {key_type}, {len(starts)} partitions): {time.perf_counter() - began:.4f} s")
    assert again.created == [] and again.rows_moved == 0
    assert sorted(again.skipped) == sorted(f"{s}.{n}" for n in expected)
    assert len(attached(admin, s, "ev")) == len(starts)


@pytest.mark.parametrize("default", [False, True], ids=["no-default", "with-default"])
def test_ensure_batches_many_partitions_into_few_transactions(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, default: bool
) -> None:
    """36 empty months: two statements each (CREATE TABLE ... LIKE, ATTACH), sent a batch per round trip.
    Without a default partition nothing blocks writers, so one transaction holds them all; with one, the
    first batch is a single range (timed), the rest as many as fit half of lock_timeout."""
    s = dst_db.schema
    create_parent(admin, s, "ev", default=default)
    runner = make_runner(lock_timeout="5s")
    report = maintenance.ensure_partitions(
        runner, dst_db.table("ev"), "month", start="2023-04-01", premake=0, today=TODAY
    )
    assert len(report.created) == 36 and report.created[0] == f"{s}.ev_p202304"
    assert names(admin, s, "ev") == sorted(
        [*(["ev_default"] if default else []), *(n.split(".")[1] for n in report.created)]
    )
    locks = 2 if default else 0  # per transaction: the parent's, then the default's NOWAIT
    ddl = runner.statements - (runner.transactions - (1 if default else 0)) * locks
    assert ddl == 2 * 36
    if default:  # + one read-only planning transaction (which new ranges the default holds rows for)
        assert 3 <= runner.transactions <= 4, runner.transactions
    else:
        assert runner.transactions == 1


def test_ensure_integer_ranges_backfill_and_premake_ahead_of_the_highest_key(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "iv", key="k", key_type="bigint", default=False)
    runner = make_runner()
    first = maintenance.ensure_partitions(runner, dst_db.table("iv"), 1000, start=0, premake=2)
    assert first.created == [f"{s}.iv_p0", f"{s}.iv_p1000", f"{s}.iv_p2000"]
    admin.execute(sql.SQL("INSERT INTO {} (k) SELECT generate_series(0, 2999)").format(ident(s, "iv")))
    # No start: the current interval is the one holding max(k) = 2999, premake 2 past it.
    ahead = maintenance.ensure_partitions(runner, dst_db.table("iv"), "1000", premake=2)
    assert ahead.created == [f"{s}.iv_p3000", f"{s}.iv_p4000"]
    back = maintenance.ensure_partitions(runner, dst_db.table("iv"), 1000, start=-2500, premake=0)
    assert back.created == [f"{s}.iv_pm3000", f"{s}.iv_pm2000", f"{s}.iv_pm1000"]
    bounds = {n: b for n, b, _ in attached(admin, s, "iv")}
    assert bounds == {
        f"iv_{'pm' if lo < 0 else 'p'}{abs(lo)}": bound_text(lo, lo + 1000, "bigint")
        for lo in range(-3000, 5000, 1000)
    }
    assert count(admin, s, "iv") == 3000
    assert where_routed(admin, s, "iv", "k", 2999) == "iv_p2000"

    began = time.perf_counter()
    noop = maintenance.ensure_partitions(runner, dst_db.table("iv"), 1000, start=-2500, premake=2)
    print(f"ensure no-op (integer, 8 partitions): {time.perf_counter() - began:.4f} s")
    assert noop.created == [] and len(noop.skipped) == 8


@pytest.fixture
def roles(admin: Conn) -> Iterator[tuple[str, str]]:
    """An owner and a reader role (cluster-wide: unique names, dropped with what they own at the end)."""
    owner, reader = (f"etl_part_{kind}_{secrets.token_hex(3)}" for kind in ("owner", "reader"))
    for role in (owner, reader):
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    yield owner, reader
    admin.execute(sql.SQL("DROP OWNED BY {}, {}").format(sql.Identifier(owner), sql.Identifier(reader)))
    for role in (owner, reader):
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_created_partitions_carry_indexes_checks_owner_and_grants(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, roles: tuple[str, str]
) -> None:
    s = dst_db.schema
    owner, reader = roles
    create_parent(admin, s, "acct")
    admin.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(s, "acct"), sql.Identifier(owner)))
    admin.execute(
        sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(ident(s, "acct"), sql.Identifier(reader))
    )
    admin.execute(sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(ident(s, "acct")))
    insert_at(admin, s, "acct", [datetime(2026, 2, 3, 4, 5)])  # waits in the default partition

    report = maintenance.ensure_partitions(
        make_runner(), dst_db.table("acct"), "month", start="2026-02-01", premake=1, today=TODAY
    )
    created = [f"acct_p{m:%Y%m}" for m in (month(2026, 2), month(2026, 3), month(2026, 4))]
    assert report.created == [f"{s}.{n}" for n in created] and report.rows_moved == 1

    parent_indexes = admin.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        (regclass_text(admin, s, "acct"),),
    ).fetchall()
    assert len(parent_indexes) == 2  # the primary key and acct_by_col
    parent_checks = admin.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'c'",
        (regclass_text(admin, s, "acct"),),
    ).fetchall()
    for name in created:
        child = regclass_text(admin, s, name)
        # ATTACH gave each partition an index attached to every parent index, all valid.
        for (parent_index,) in parent_indexes:
            row = admin.execute(
                "SELECT x.indisvalid FROM pg_inherits h JOIN pg_index x ON x.indexrelid = h.inhrelid "
                "WHERE h.inhparent = %s::regclass AND x.indrelid = %s::regclass",
                (parent_index, child),
            ).fetchone()
            assert row == (True,), f"{name} has no valid index attached to {parent_index}"
        assert admin.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisprimary", (child,)
        ).fetchone() == (1,)
        # The parent's CHECK constraints, nothing else (the temporary bound CHECK is gone).
        checks = admin.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype = 'c'",
            (child,),
        ).fetchall()
        assert checks == parent_checks
        owner_row = admin.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", (child,)
        ).fetchone()
        assert owner_row == (owner,)
        privileges = admin.execute(
            "SELECT has_table_privilege(%s, %s, 'SELECT'), has_table_privilege(%s, %s, 'INSERT'), "
            "has_table_privilege(%s, %s, 'DELETE')",
            (reader, child, reader, child, reader, child),
        ).fetchone()
        assert privileges == (True, True, False)
        public = admin.execute(
            "SELECT array_agg(a.privilege_type) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.oid = %s::regclass AND a.grantee = 0",
            (child,),
        ).fetchone()
        assert public == (["SELECT"],)
    assert where_routed(admin, s, "acct", "ts", datetime(2026, 2, 3, 4, 5)) == "acct_p202602"


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_plans_the_ddl_and_changes_nothing(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2025, 1), month(2026, 3)])
    insert_at(admin, s, "ev", [datetime(2026, 4, 2), datetime(2026, 9, 9), datetime(2025, 1, 5)])
    archive = f"{s}_arch"
    before = catalog_snapshot(admin, s)
    log = RecordingLog()
    runner = make_runner(dry_run=True, log=log)

    ensure = maintenance.ensure_partitions(
        runner, dst_db.table("ev"), "month", start="2026-03-01", premake=1, today=TODAY
    )
    assert ensure.dry_run and ensure.created == [f"{s}.ev_p202604"]
    assert any("ATTACH PARTITION" in q and "ev_p202604" in q for q in ensure.planned_sql)
    assert any(q.startswith("CREATE TABLE") for q in ensure.planned_sql)
    assert any(q.startswith("WITH moved AS (DELETE FROM") for q in ensure.planned_sql)

    drain = maintenance.drain_default(runner, dst_db.table("ev"), "month")
    assert drain.created == [f"{s}.ev_p202604", f"{s}.ev_p202609"]
    retention = maintenance.apply_retention(
        runner, dst_db.table("ev"), "6 months", mode="archive", archive_schema=archive, now=NOW
    )
    assert retention.detached == [f"{s}.ev_p202501"] and retention.archived == [f"{archive}.ev_p202501"]
    assert any("SET SCHEMA" in q for q in retention.planned_sql)
    index = maintenance.create_partitioned_index(runner, dst_db.table("ev"), "ev_seq_idx", ["seq"])
    assert any("CONCURRENTLY" in q for q in index.planned_sql)
    assert all(r.planned_sql and r.dry_run for r in (drain, retention, index))
    assert any(m.startswith("[dry run]") for m in log.messages("info"))

    assert catalog_snapshot(admin, s) == before
    assert count(admin, s, "ev_default") == 2
    assert admin.execute("SELECT to_regnamespace(%s)", (archive,)).fetchone() == (None,)


# -- writers keep writing ------------------------------------------------------------------------


class Writers:
    """Threads inserting one row per autocommit statement into the parents until stopped."""

    def __init__(self, conninfo: str, schema: str, plan: dict[str, list[datetime]], n: int = 4) -> None:
        self.conninfo, self.schema, self.plan = conninfo, schema, plan
        self.committed = {(table, w): 0 for table in plan for w in range(n)}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(w,), daemon=True) for w in range(n)]

    def _write(self, w: int) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            statements = {
                table: sql.SQL("INSERT INTO {} (ts, w, seq) VALUES (%s, %s, %s)").format(
                    ident(self.schema, table)
                )
                for table in self.plan
            }
            seq = 0
            while not self.stop.is_set():
                for table, stamps in self.plan.items():
                    try:
                        conn.execute(statements[table], (stamps[(seq + w) % len(stamps)], w, seq))
                    except psycopg.Error as exc:
                        self.errors.append(exc)
                    else:
                        self.committed[(table, w)] += 1
                seq += 1

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def _deadlocks(conn: Conn) -> int:
    row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def _is_default_routing_race(exc: BaseException) -> bool:
    return (
        isinstance(exc, errors.CheckViolation)
        and "_default" in str(exc)
        and "partition constraint" in str(exc)
    )


def test_concurrent_writers_survive_ensure_drain_retention_and_index(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    old = [month(2025, 1), month(2025, 2)]
    create_parent(admin, s, "with_def")  # plain DETACH (PostgreSQL refuses CONCURRENTLY here)
    add_months(admin, s, "with_def", [*old, month(2026, 1), month(2026, 2), month(2026, 3)])
    create_parent(admin, s, "no_def", default=False)  # DETACH ... CONCURRENTLY
    add_months(admin, s, "no_def", [*old, *(month(2026, m) for m in range(1, 5))])
    for table in ("with_def", "no_def"):
        insert_at(admin, s, table, [datetime(2025, 1, 9), datetime(2025, 2, 9)] * 50, w=-1)
    # with_def: existing partitions, months only the default holds (created while writing), the old one.
    plan = {
        "with_def": [datetime(2026, m, 10, 6) for m in (1, 2, 3, 4, 5, 7, 9)] + [datetime(2027, 6, 1)],
        "no_def": [datetime(2026, m, 12, 6) for m in (1, 2, 3, 4)],
    }
    deadlocks_before = _deadlocks(admin)
    log = RecordingLog()
    runner = make_runner(lock_timeout="1s", attempts=10, log=log)
    reports = {}
    with Writers(dst_db.conninfo, s, plan) as writers:
        time.sleep(0.3)
        reports["ensure"] = maintenance.ensure_partitions(
            runner, dst_db.table("with_def"), "month", start="2026-01-01", premake=3, today=TODAY
        )
        reports["ensure_no_def"] = maintenance.ensure_partitions(
            runner, dst_db.table("no_def"), "month", start="2026-01-01", premake=3, today=TODAY
        )
        reports["drain"] = maintenance.drain_default(runner, dst_db.table("with_def"), "month")
        for table in ("with_def", "no_def"):
            reports[f"retention_{table}"] = maintenance.apply_retention(
                runner, dst_db.table(table), "12 months", mode="keep", concurrently=True, now=NOW
            )
            reports[f"index_{table}"] = maintenance.create_partitioned_index(
                runner, dst_db.table(table), f"{table}_seq_idx", ["seq"]
            )
        time.sleep(0.2)
    runner.conn.close()
    print({k: (r.seconds, r.retries) for k, r in reports.items()})

    assert not any(isinstance(e, errors.DeadlockDetected) for e in writers.errors)
    assert not any("deadlock" in m.lower() for m in log.messages())
    # Maintenance completed.
    assert reports["ensure"].created == [f"{s}.with_def_p2026{m:02d}" for m in (4, 5, 6)]
    assert reports["ensure_no_def"].created == [f"{s}.no_def_p202605", f"{s}.no_def_p202606"]
    assert reports["drain"].created == [f"{s}.with_def_p{m}" for m in ("202607", "202609", "202706")]
    for table in ("with_def", "no_def"):
        assert reports[f"retention_{table}"].detached == [f"{s}.{table}_p{m:%Y%m}" for m in old]
        assert not set(names(admin, s, table)) & {f"{table}_p{m:%Y%m}" for m in old}
        valid, children = index_tree(admin, s, table, f"{table}_seq_idx")
        assert valid is True
        assert children == dict.fromkeys(names(admin, s, table), True)
    # Every committed row is there: in the parent or in the partitions retention detached (mode keep).
    for (table, w), committed in writers.committed.items():
        present = count(admin, s, table, "w = %s", (w,)) + sum(
            count(admin, s, f"{table}_p{m:%Y%m}", "w = %s", (w,)) for m in old
        )
        assert present == committed, f"{table}: writer {w} committed {committed}, found {present}"
        assert committed > 0
    time.sleep(0.5)  # the writers' and the runner's sessions have exited and flushed their statistics
    assert _deadlocks(admin) == deadlocks_before
    unexpected = [e for e in writers.errors if not _is_default_routing_race(e)]
    assert unexpected == []
    assert writers.errors == []


# -- writers never wait longer than lock_timeout ----------------------------------------------------

LOCK_TIMEOUT = 0.4
# What a writer's INSERT may take beyond lock_timeout: its own execution (about a millisecond), the
# maintenance session's lock requests being granted and released (a round trip each), and being
# scheduled again on a 2-core machine shared with 6 busy threads here and other test sessions.
SCHEDULING_MARGIN = 0.1


def _tup_deleted(admin: Conn, s: str, table: str) -> int:
    """Rows DELETEd from `table` so far, in committed and rolled-back transactions alike (pgstat counts
    attempts): a retry that moved the rows again would count them twice."""
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = %s::regclass",
        (regclass_text(admin, s, table),),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("rows_to_move", [True, False], ids=["moves-rows", "moves-nothing"])
def test_writers_to_other_partitions_never_wait_longer_than_lock_timeout_behind_a_long_reader(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, rows_to_move: bool
) -> None:
    """4 writers insert through the parent into existing partitions while a reader holds the whole table
    (the default included) for 3 s and ensure creates April (with or without rows to move out of the
    default), May and June. ATTACH needs ACCESS EXCLUSIVE on the default, which it cannot get while the
    reader is there: every try before the reader ends must give up without stalling the writers."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 1), month(2026, 2), month(2026, 3)])
    # 280 rows in the default: for April (moved by ensure) or for June 2027 (left where they are)
    moved = [
        datetime(2026 if rows_to_move else 2027, 4 if rows_to_move else 6, d, 12) for d in range(1, 29)
    ] * 10
    insert_at(admin, s, "ev", moved, w=99)
    deleted_before = _tup_deleted(admin, s, "ev_default")
    waits: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write(w: int) -> None:
        stamps = [datetime(2026, m, 5 + w, 6) for m in (1, 2, 3)]
        with psycopg.connect(dst_db.conninfo, autocommit=True) as conn:
            statement = sql.SQL("INSERT INTO {} (ts, w) VALUES (%s, %s)").format(ident(s, "ev"))
            n = 0
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    conn.execute(statement, (stamps[n % 3], w))
                except psycopg.Error as exc:
                    failures.append(exc)
                waits.append(time.perf_counter() - began)
                n += 1
                time.sleep(0.002)

    reader = psycopg.connect(dst_db.conninfo)
    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(4)]
    for thread in writers:
        thread.start()
    log = RecordingLog()
    runner = make_runner(
        lock_timeout=f"{int(LOCK_TIMEOUT * 1000)}ms", attempts=12, backoff_seconds=0.1, log=log
    )
    try:
        time.sleep(0.2)
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "ev")))  # ACCESS SHARE on all
        release = threading.Timer(3.0, reader.rollback)
        release.start()
        began = time.perf_counter()
        report = maintenance.ensure_partitions(
            runner, dst_db.table("ev"), "month", start="2026-01-01", premake=3, today=TODAY
        )
        ensure_seconds = time.perf_counter() - began
        release.join()
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in writers:
            thread.join(10)
        reader.close()
    runner.conn.close()  # flushes its statistics
    worst = max(waits)
    print(
        f"worst writer INSERT wait {worst:.3f} s over {len(waits)} inserts (lock_timeout {LOCK_TIMEOUT} s); "
        f"ensure {ensure_seconds:.2f} s with {report.retries} retries"
    )
    assert failures == []
    assert report.created == [f"{s}.ev_p2026{m:02d}" for m in (4, 5, 6)]
    assert report.retries > 0 and ensure_seconds > 2.5  # it did meet the reader, and outlasted it
    assert worst <= LOCK_TIMEOUT + SCHEDULING_MARGIN, f"a writer waited {worst:.3f} s"
    # Every moved row exists exactly once, in April's partition, and was moved exactly once.
    if not rows_to_move:
        assert report.moved == {} and count(admin, s, "ev_default", "w = 99") == len(moved)
        return
    assert report.moved == {f"{s}.ev_p202604": len(moved)}
    assert count(admin, s, "ev_p202604", "w = 99") == len(moved) == count(admin, s, "ev", "w = 99")
    assert count(admin, s, "ev_default") == 0
    deadline = time.monotonic() + 5
    while _tup_deleted(admin, s, "ev_default") == deleted_before and time.monotonic() < deadline:
        time.sleep(0.1)  # the closed session's statistics arrive
    assert _tup_deleted(admin, s, "ev_default") - deleted_before == len(moved)


def _slow_move(admin: Conn, s: str, table: str = "ev") -> None:
    """A CHECK on the parent that sleeps 1 s for w = 99: LIKE ... INCLUDING CONSTRAINTS copies it to the
    new partition, so moving such a row out of the default takes a second while holding the locks
    (a trigger on the default would not do: the move disables the default's user triggers)."""
    admin.execute(
        sql.SQL(
            "CREATE FUNCTION {f}(w int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
            "IF w = 99 THEN PERFORM pg_sleep(1); END IF; RETURN true; END $$"
        ).format(f=ident(s, "slow_ok"))
    )
    admin.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT slow_ok CHECK ({}(w))").format(
            ident(s, table), ident(s, "slow_ok")
        )
    )


def _wait_until_moving(admin: Conn, pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until maintenance is moving the rows, holding its locks
        row = admin.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
        ).fetchone()
        if row and "DELETE FROM" in row[0]:
            return
        time.sleep(0.01)
    raise AssertionError("maintenance never started moving rows")


def test_writer_into_default_while_ensure_creates_its_range_waits_and_readers_of_other_ranges_do_not(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """The move holds ACCESS EXCLUSIVE on the default (taken first, NOWAIT, so ATTACH never waits for it
    while writers queue behind the parent lock): reads that touch the default wait for the move, reads
    pruned to other partitions do not lock the default and go on."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 3)])
    _slow_move(admin, s)
    insert_at(admin, s, "ev", [datetime(2026, 4, 1, 1)], w=99)  # in the default: ensure moves it, slowly
    runner = make_runner()
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            report=maintenance.ensure_partitions(
                runner, dst_db.table("ev"), "month", start="2026-03-01", premake=1, today=TODAY
            )
        )
    )
    worker.start()
    try:
        _wait_until_moving(admin, runner.conn.info.backend_pid)
        # Reads through the parent pruned to another partition do not wait for the move.
        with dst_db.connect() as reader:
            reader.execute("SET statement_timeout = '400ms'")
            query = sql.SQL("SELECT count(*) FROM {} WHERE ts >= '2026-03-01' AND ts < '2026-04-01'")
            assert reader.execute(query.format(ident(s, "ev"))).fetchone() == (0,)
        # A write through the parent waits and then routes to the new partition, never rejected.
        insert_at(admin, s, "ev", [datetime(2026, 4, 2, 2)], w=7)
    finally:
        worker.join()
    assert result["report"].created == [f"{s}.ev_p202604"]
    assert result["report"].moved == {f"{s}.ev_p202604": 1}
    assert where_routed(admin, s, "ev", "ts", datetime(2026, 4, 2, 2)) == "ev_p202604"


def test_moving_rows_does_not_wait_for_writes_to_other_partitions(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """LOCK TABLE ONLY the parent: an open transaction writing straight into another partition does not
    block the move (a plain LOCK TABLE parent locks every partition and would time out here)."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 3)])
    insert_at(admin, s, "ev", [datetime(2026, 4, 5)])  # the default holds a row of April
    blocker = psycopg.connect(dst_db.conninfo)
    try:
        insert_at(blocker, s, "ev_p202603", [datetime(2026, 3, 9)])  # open: ROW EXCLUSIVE on ev_p202603
        runner = make_runner(lock_timeout="200ms", attempts=2, statement_timeout="5s")
        report = maintenance.ensure_partitions(
            runner, dst_db.table("ev"), "month", start="2026-03-01", premake=1, today=TODAY
        )
    finally:
        blocker.close()
    assert report.created == [f"{s}.ev_p202604"] and report.rows_moved == 1 and report.retries == 0


def test_drain_of_a_large_default_lets_writers_in_between_ranges(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """200k rows over 10 months: writers through the parent wait for one range's transaction at most."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 3)])
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (ts, w) SELECT timestamptz '2025-01-01 00:00+00' + (i % 10) * interval '1 month' "
            "+ (i % 27) * interval '1 day', -1 FROM generate_series(1, 200000) i"
        ).format(ident(s, "ev"))
    )
    latencies: list[tuple[float, float]] = []  # (finished at, seconds) of each writer insert
    stop = threading.Event()

    def write(w: int) -> None:
        with psycopg.connect(dst_db.conninfo, autocommit=True) as conn:
            statement = sql.SQL("INSERT INTO {} (ts, w) VALUES (%s, %s)").format(ident(s, "ev"))
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute(statement, (datetime(2026, 3, 10), w))
                latencies.append((time.perf_counter(), time.perf_counter() - began))
                time.sleep(0.005)

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(2)]
    for thread in writers:
        thread.start()
    time.sleep(0.2)
    began = time.perf_counter()
    report = maintenance.drain_default(make_runner(lock_timeout="10s"), dst_db.table("ev"), "month")
    ended = time.perf_counter()
    stop.set()
    for thread in writers:
        thread.join(10)
    drain_seconds = ended - began
    during = [seconds for at, seconds in latencies if began <= at <= ended]
    worst = max(seconds for _, seconds in latencies)
    print(
        f"drain of 200k rows in 10 ranges: {drain_seconds:.2f} s; writer inserts during it: {len(during)}, "
        f"worst writer latency {worst:.3f} s"
    )
    assert report.rows_moved == 200_000 and len(report.created) == 10 and count(admin, s, "ev_default") == 0
    assert sorted(report.moved.values()) == [20_000] * 10
    assert len(during) >= 10  # writers got in between the ranges
    assert worst < drain_seconds / 2, f"a writer waited {worst:.2f} s of a {drain_seconds:.2f} s drain"


def test_move_keeps_the_default_partitions_triggers_quiet_and_as_they_were(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """Row triggers (cloned from the parent or the default's own) do not see a move; their modes survive,
    also when the transaction rolls back."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    admin.execute(sql.SQL("CREATE TABLE {} (op text, n int)").format(ident(s, "seen")))
    admin.execute(
        sql.SQL(
            "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO {seen} VALUES (TG_OP || ':' || TG_TABLE_NAME, 1); RETURN NULL; END $$"
        ).format(f=ident(s, "count_rows"), seen=ident(s, "seen"))
    )
    for trigger, table, extra in (
        ("parent_rows", "ev", None),  # cloned onto every partition
        ("default_always", "ev_default", "ENABLE ALWAYS"),
        ("default_off", "ev_default", "DISABLE"),
    ):
        admin.execute(
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(trigger), ident(s, table), ident(s, "count_rows"))
        )
        if extra:
            admin.execute(
                sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                    ident(s, table), sql.SQL(extra), sql.Identifier(trigger)
                )
            )

    def modes() -> list[tuple[str, str]]:
        return admin.execute(
            "SELECT tgname::text, tgenabled::text FROM pg_trigger WHERE tgrelid = %s::regclass ORDER BY 1",
            (regclass_text(admin, s, "ev_default"),),
        ).fetchall()

    insert_at(admin, s, "ev", [datetime(2026, 3, 2), datetime(2026, 5, 2)])
    admin.execute(sql.SQL("TRUNCATE {}").format(ident(s, "seen")))
    before = modes()
    assert before == [("default_always", "A"), ("default_off", "D"), ("parent_rows", "O")]
    # A move that rolls back: the ATTACH cannot get ACCESS EXCLUSIVE on the default while a reader holds it.
    reader = psycopg.connect(dst_db.conninfo)
    try:
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "ev_default")))
        with pytest.raises(PartitionError, match="gave up"):
            maintenance.ensure_partitions(
                make_runner(lock_timeout="100ms", attempts=2),
                dst_db.table("ev"),
                "month",
                premake=0,
                today=TODAY,
            )
    finally:
        reader.close()
    assert modes() == before and count(admin, s, "ev_default") == 2
    report = maintenance.ensure_partitions(make_runner(), dst_db.table("ev"), "month", premake=0, today=TODAY)
    drain = maintenance.drain_default(make_runner(), dst_db.table("ev"), "month")
    assert report.rows_moved == 1 and drain.rows_moved == 1 and count(admin, s, "ev_default") == 0
    assert admin.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "seen"))).fetchone() == (0,)
    assert modes() == before
    insert_at(admin, s, "ev", [datetime(2026, 7, 1)])  # a real insert still fires the enabled ones
    fired = admin.execute(sql.SQL("SELECT op FROM {} ORDER BY 1").format(ident(s, "seen"))).fetchall()
    assert fired == [("INSERT:ev_default",), ("INSERT:ev_default",)]


def test_rows_are_not_moved_out_of_the_default_when_foreign_keys_reference_the_table(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """The DELETE half of a move would fire ON DELETE CASCADE: the referencing rows would vanish."""
    s = dst_db.schema
    create_parent(admin, s, "ev")
    admin.execute(
        sql.SQL(
            "CREATE TABLE {refs} (id bigint PRIMARY KEY, ev_id bigint, ev_ts timestamptz, "
            "CONSTRAINT refs_ev_fk FOREIGN KEY (ev_id, ev_ts) REFERENCES {ev} (id, ts) ON DELETE CASCADE)"
        ).format(refs=ident(s, "refs"), ev=ident(s, "ev"))
    )
    insert_at(admin, s, "ev", [datetime(2026, 3, 2)])
    admin.execute(sql.SQL("INSERT INTO {} SELECT 1, id, ts FROM {}").format(ident(s, "refs"), ident(s, "ev")))
    before = catalog_snapshot(admin, s)
    with pytest.raises(PartitionConfigError, match=r"foreign keys reference the table \(refs_ev_fk on"):
        maintenance.drain_default(make_runner(), dst_db.table("ev"), "month")
    assert catalog_snapshot(admin, s) == before
    assert count(admin, s, "refs") == 1 and count(admin, s, "ev_default") == 1
    # Ranges the default holds nothing for are still created.
    report = maintenance.ensure_partitions(
        make_runner(), dst_db.table("ev"), "month", start="2026-04-01", premake=1, today=TODAY
    )
    assert report.created == [f"{s}.ev_p202604"]


def test_drain_reports_rows_with_a_null_key_left_in_the_default(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    admin.execute(
        sql.SQL("CREATE TABLE {} (ts timestamptz, w int) PARTITION BY RANGE (ts)").format(ident(s, "nk"))
    )
    admin.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(ident(s, "nk_default"), ident(s, "nk"))
    )
    admin.execute(
        sql.SQL("INSERT INTO {} VALUES (NULL, 1), (NULL, 2), ('2026-03-03', 3)").format(ident(s, "nk"))
    )
    report = maintenance.drain_default(make_runner(), dst_db.table("nk"), "month", drop_default=True)
    assert report.created == [f"{s}.nk_p202603"] and report.rows_moved == 1
    assert report.warnings == [
        f"{s}.nk_default keeps 2 row(s) whose ts is NULL: no range partition can hold them; fix or delete them.",
        f"{s}.nk_default was not dropped: it holds 2 row(s).",
    ]
    assert report.dropped == [] and names(admin, s, "nk") == ["nk_default", "nk_p202603"]


def test_drained_default_dropped_keeps_retention_detaches_concurrent(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """Beside a default partition retention must fall back to a plain DETACH and says so; drained and
    dropped by drain_default(drop_default=True), the next retention detaches CONCURRENTLY, no warning."""
    s = dst_db.schema
    _retention_table(admin, s, default=True)
    insert_at(admin, s, "ev", [datetime(2026, 7, 4), datetime(2026, 8, 9)])  # only the default holds these
    log = RecordingLog()
    first = maintenance.apply_retention(make_runner(log=log), dst_db.table("ev"), "4 months", now=NOW)
    assert first.detached == [f"{s}.ev_p202510"]
    assert len(first.warnings) == 1 and first.warnings[0].startswith(
        f"{s}.ev has a default partition ({s}.ev_default): PostgreSQL refuses DETACH PARTITION ... "
        "CONCURRENTLY beside one, so 1 partition(s) were detached with a plain DETACH"
    )
    assert "drop_default=True" in first.warnings[0]

    drained = maintenance.drain_default(make_runner(), dst_db.table("ev"), "month", drop_default=True)
    assert drained.created == [f"{s}.ev_p202607", f"{s}.ev_p202608"] and drained.rows_moved == 2
    assert drained.dropped == [f"{s}.ev_default"] and drained.warnings == []
    assert admin.execute("SELECT to_regclass(%s)", (regclass_text(admin, s, "ev_default"),)).fetchone() == (
        None,
    )
    log = RecordingLog()
    second = maintenance.apply_retention(make_runner(log=log), dst_db.table("ev"), "3 months", now=NOW)
    assert second.detached == [f"{s}.ev_p202511"] and second.warnings == []
    assert any("DETACH PARTITION" in m and m.endswith("CONCURRENTLY") for m in log.messages("info"))
    assert count(admin, s, "ev") == 4 * 10 + 2


# -- lock timeouts -------------------------------------------------------------------------------


def _hold_access_exclusive(dst_db: SchemaDb, table: str, *, only: bool = False) -> Conn:
    """An open transaction holding ACCESS EXCLUSIVE on `table` (and, unless `only`, its partitions)."""
    blocker = psycopg.connect(dst_db.conninfo)
    blocker.execute(
        sql.SQL("LOCK TABLE {}{} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL("ONLY " if only else ""), ident(dst_db.schema, table)
        )
    )
    return blocker


@pytest.mark.parametrize("only", [False, True], ids=["lock-table", "lock-table-only"])
def test_lock_timeout_gives_up_after_the_attempts_naming_the_lock(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, only: bool
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 3)])
    before = catalog_snapshot(admin, s)
    blocker = _hold_access_exclusive(dst_db, "ev", only=only)
    try:
        runner = make_runner(lock_timeout="100ms", attempts=3, statement_timeout="5s")
        began = time.perf_counter()
        with pytest.raises(PartitionError, match=r"gave up after 3 attempts.*100ms.*lock") as caught:
            maintenance.ensure_partitions(runner, dst_db.table("ev"), "month", premake=1, today=TODAY)
        assert "LockNotAvailable" in str(caught.value) and f"{s}.ev_p202604" in str(caught.value)
        # A lock timeout is transient (the operator lets Airflow retry) and keeps the server's SQLSTATE.
        assert isinstance(caught.value, PartitionLockTimeout) and not is_terminal(caught.value)
        assert caught.value.sqlstate == "55P03"  # lock_not_available
        assert time.perf_counter() - began < 3
        assert runner.retries == 2
        waiting = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (runner.conn.info.backend_pid,)
        ).fetchone()
        assert waiting == (0,)  # it gave up: nothing left queued behind the blocker
    finally:
        blocker.close()
    assert catalog_snapshot(admin, s) == before


def test_lock_released_midway_is_retried_and_completes(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 3)])
    blocker = _hold_access_exclusive(dst_db, "ev")
    release = threading.Timer(0.4, blocker.rollback)
    release.start()
    try:
        log = RecordingLog()
        runner = make_runner(
            lock_timeout="100ms", attempts=8, backoff_seconds=0.1, log=log, statement_timeout="5s"
        )
        report = maintenance.ensure_partitions(runner, dst_db.table("ev"), "month", premake=1, today=TODAY)
    finally:
        release.join()
        blocker.close()
    assert report.created == [f"{s}.ev_p202604"] and report.retries > 0
    assert any("lock timeout" in m for m in log.messages("warning"))
    assert names(admin, s, "ev") == ["ev_default", "ev_p202603", "ev_p202604"]


def test_integer_ensure_does_not_wait_forever_behind_a_lock(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "iv", key="k", key_type="bigint", default=False)
    add_partition(admin, s, "iv", "iv_p0", 0, 100)
    blocker = _hold_access_exclusive(dst_db, "iv")
    try:
        runner = make_runner(lock_timeout="100ms", attempts=2, statement_timeout="3s")
        with pytest.raises(PartitionError, match="attempts"):
            maintenance.ensure_partitions(runner, dst_db.table("iv"), 100, premake=1)
    finally:
        blocker.close()


# -- the default partition -----------------------------------------------------------------------


def test_drain_default_moves_every_row_into_new_monthly_partitions(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 1)])
    in_january = [datetime(2026, 1, d) for d in range(1, 29)]
    outside = [datetime(2025, 10, 31, 23, 59, 59), datetime(2025, 11, 1)] + [
        datetime(2026, m, d, h) for m in (2, 3, 5) for d in (1, 15, 28) for h in (0, 23)
    ]
    insert_at(admin, s, "ev", in_january + outside)
    assert count(admin, s, "ev_default") == len(outside)
    total = count(admin, s, "ev")

    report = maintenance.drain_default(make_runner(), dst_db.table("ev"), "month")
    expected = ["ev_p202510", "ev_p202511", "ev_p202602", "ev_p202603", "ev_p202605"]
    assert report.created == [f"{s}.{n}" for n in expected]
    assert report.rows_moved == len(outside)
    assert count(admin, s, "ev_default") == 0 and count(admin, s, "ev") == total
    assert count(admin, s, "ev_p202510") == 1 and count(admin, s, "ev_p202603") == 6
    again = maintenance.drain_default(make_runner(), dst_db.table("ev"), "month")
    assert again.created == [] and again.rows_moved == 0


def test_drain_default_integer_ranges_including_negative_keys(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "iv", key="k", key_type="integer")
    add_partition(admin, s, "iv", "iv_p0", 0, 100)
    admin.execute(sql.SQL("INSERT INTO {} (k) SELECT generate_series(-150, 249)").format(ident(s, "iv")))
    report = maintenance.drain_default(make_runner(), dst_db.table("iv"), 100)
    assert report.created == [f"{s}.iv_pm200", f"{s}.iv_pm100", f"{s}.iv_p100", f"{s}.iv_p200"]
    assert report.rows_moved == 300 and count(admin, s, "iv_default") == 0 and count(admin, s, "iv") == 400
    assert count(admin, s, "iv_pm200") == 50 and where_routed(admin, s, "iv", "k", -101) == "iv_pm200"


def test_ensure_moves_default_rows_of_the_ranges_it_creates(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "ev")
    insert_at(admin, s, "ev", [datetime(2026, 3, d) for d in range(1, 11)])  # current month
    insert_at(admin, s, "ev", [datetime(2026, 4, 30, 23)] * 5)  # premade month
    insert_at(admin, s, "ev", [datetime(2027, 1, 1)] * 3)  # outside what ensure creates: stays
    report = maintenance.ensure_partitions(
        make_runner(lock_timeout="500ms", attempts=2), dst_db.table("ev"), "month", premake=1, today=TODAY
    )
    assert report.created == [f"{s}.ev_p202603", f"{s}.ev_p202604"] and report.rows_moved == 15
    assert report.retries == 0
    assert count(admin, s, "ev_p202603") == 10 and count(admin, s, "ev_p202604") == 5
    assert count(admin, s, "ev_default") == 3 and count(admin, s, "ev") == 18


# -- retention -----------------------------------------------------------------------------------


def _retention_table(admin: Conn, s: str, default: bool) -> list[date]:
    months = [
        month(2025, 10),
        month(2025, 11),
        month(2025, 12),
        month(2026, 1),
        month(2026, 2),
        month(2026, 3),
    ]
    create_parent(admin, s, "ev", default=default)
    add_months(admin, s, "ev", months)
    insert_at(
        admin, s, "ev", [datetime(m.year, m.month, d) for m in months for d in (10, 20) for _ in range(5)]
    )
    return months


@pytest.mark.parametrize("default", [False, True], ids=["concurrent-detach", "with-default"])
@pytest.mark.parametrize("mode", ["keep", "archive", "drop"])
def test_retention_detaches_only_partitions_entirely_before_the_cutoff(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, mode: str, default: bool
) -> None:
    s = dst_db.schema
    archive = f"{s}_arch"
    _retention_table(admin, s, default)
    recent_before = count(admin, s, "ev", "ts >= '2025-12-01'")
    try:
        # now - 3 months = 2025-12-15: Oct and Nov go; Dec straddles the cutoff and stays.
        report = maintenance.apply_retention(
            make_runner(), dst_db.table("ev"), "3 months", mode=mode, archive_schema=archive, now=NOW
        )
        gone = ["ev_p202510", "ev_p202511"]
        assert report.detached == [f"{s}.{n}" for n in gone]
        kept = ["ev_p202512", "ev_p202601", "ev_p202602", "ev_p202603"]
        assert names(admin, s, "ev") == (["ev_default", *kept] if default else kept)
        assert count(admin, s, "ev", "ts >= '2025-12-01'") == recent_before == 40
        assert count(admin, s, "ev", "ts < '2025-12-01'") == 0
        for n in gone:
            where = admin.execute(
                "SELECT n.nspname, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s AND n.nspname IN (%s, %s)",
                (n, s, archive),
            ).fetchall()
            if mode == "keep":
                assert where == [(s, False)] and count(admin, s, n) == 10
            elif mode == "archive":
                assert where == [(archive, False)] and count(admin, archive, n) == 10
            else:
                assert where == []
        if default:  # PostgreSQL refuses CONCURRENTLY beside a default partition: the report says so
            assert len(report.warnings) == 1 and "were detached with a plain DETACH" in report.warnings[0]
        else:
            assert report.warnings == []
        assert report.archived == ([f"{archive}.{n}" for n in gone] if mode == "archive" else [])
        assert report.dropped == ([f"{s}.{n}" for n in gone] if mode == "drop" else [])
        again = maintenance.apply_retention(
            make_runner(), dst_db.table("ev"), "3 months", mode=mode, archive_schema=archive, now=NOW
        )
        assert again.detached == [] and again.warnings == [] and names(admin, s, "ev")[-4] == "ev_p202512"
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(archive)))


def test_retention_on_integer_keys_counts_back_from_the_highest_key(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "iv", key="k", key_type="bigint", default=False)
    for lo in range(0, 5000, 1000):
        add_partition(admin, s, "iv", f"iv_p{lo}", lo, lo + 1000)
    admin.execute(sql.SQL("INSERT INTO {} (k) SELECT generate_series(0, 4999)").format(ident(s, "iv")))
    report = maintenance.apply_retention(make_runner(), dst_db.table("iv"), 2500, mode="drop")
    # cutoff 4999 - 2500 = 2499: [2000, 3000) holds rows above it and stays.
    assert report.dropped == [f"{s}.iv_p0", f"{s}.iv_p1000"]
    assert names(admin, s, "iv") == ["iv_p2000", "iv_p3000", "iv_p4000"]
    assert count(admin, s, "iv") == 3000


def test_drop_is_refused_when_a_foreign_key_references_the_table(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    _retention_table(admin, s, default=False)
    admin.execute(
        sql.SQL(
            "CREATE TABLE {refs} (id bigint PRIMARY KEY, ev_id bigint, ev_ts timestamptz, "
            "CONSTRAINT refs_ev_fk FOREIGN KEY (ev_id, ev_ts) REFERENCES {ev} (id, ts))"
        ).format(refs=ident(s, "refs"), ev=ident(s, "ev"))
    )
    admin.execute(
        sql.SQL("INSERT INTO {} SELECT 1, id, ts FROM {} WHERE ts >= '2026-03-01' LIMIT 1").format(
            ident(s, "refs"), ident(s, "ev")
        )
    )
    before = catalog_snapshot(admin, s)
    with pytest.raises(PartitionConfigError, match=rf"refusing to drop .*{s}\.ev.*refs_ev_fk on .*refs"):
        maintenance.apply_retention(make_runner(), dst_db.table("ev"), "3 months", mode="drop", now=NOW)
    assert catalog_snapshot(admin, s) == before
    assert count(admin, s, "ev") == 60


def test_interrupted_concurrent_detach_is_finalized_by_the_next_run(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    _retention_table(admin, s, default=False)
    blocker = psycopg.connect(dst_db.conninfo)
    blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        assert blocker.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "ev"))).fetchone() == (60,)
        with dst_db.connect() as detacher:
            detacher.execute("SET statement_timeout = '1s'")
            with pytest.raises(errors.QueryCanceled):
                detacher.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                        ident(s, "ev"), ident(s, "ev_p202510")
                    )
                )
        assert [r for r in attached(admin, s, "ev") if r[2]] == [
            ("ev_p202510", bound_text(month(2025, 10), month(2025, 11), "timestamptz"), True)
        ]
    finally:
        blocker.close()
    report = maintenance.apply_retention(make_runner(), dst_db.table("ev"), "3 months", mode="keep", now=NOW)
    assert report.finalized == [f"{s}.ev_p202510"]
    assert report.detached == [f"{s}.ev_p202510", f"{s}.ev_p202511"]
    assert names(admin, s, "ev") == ["ev_p202512", "ev_p202601", "ev_p202602", "ev_p202603"]
    assert count(admin, s, "ev_p202510") == 10
    assert admin.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass",
        (regclass_text(admin, s, "ev_p202510"),),
    ).fetchone() == (0,)


def test_concurrent_detach_timing_out_in_its_wait_is_finished_in_the_same_run(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    _retention_table(admin, s, default=False)
    blocker = psycopg.connect(dst_db.conninfo)
    blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    blocker.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "ev")))
    release = threading.Timer(0.6, blocker.rollback)
    release.start()
    try:
        report = maintenance.apply_retention(
            make_runner(lock_timeout="100ms", attempts=8, backoff_seconds=0.1),
            dst_db.table("ev"),
            "3 months",
            mode="keep",
            now=NOW,
        )
    finally:
        release.join()
        blocker.close()
    assert report.detached == [f"{s}.ev_p202510", f"{s}.ev_p202511"] and report.retries > 0
    assert names(admin, s, "ev")[0] == "ev_p202512"


def test_archive_name_taken_gets_a_suffix_instead_of_stranding_the_detached_table(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    """Late rows recreated a partition that an earlier run archived: the archive already has its name."""
    s = dst_db.schema
    archive = f"{s}_arch"
    _retention_table(admin, s, default=False)
    try:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(archive)))
        admin.execute(sql.SQL("CREATE TABLE {} (earlier int)").format(ident(archive, "ev_p202510")))
        report = maintenance.apply_retention(
            make_runner(), dst_db.table("ev"), "3 months", mode="archive", archive_schema=archive, now=NOW
        )
        assert report.detached == [f"{s}.ev_p202510", f"{s}.ev_p202511"]
        assert report.archived == [f"{archive}.ev_p202510_1", f"{archive}.ev_p202511"]
        assert report.warnings == [
            f"{archive}.ev_p202510 already exists: {s}.ev_p202510 was archived as {archive}.ev_p202510_1"
        ]
        assert count(admin, archive, "ev_p202510_1") == 10 and count(admin, archive, "ev_p202510") == 0
        assert admin.execute(
            "SELECT to_regclass(%s)", (regclass_text(admin, s, "ev_p202510"),)
        ).fetchone() == (None,)
        state = admin.execute(
            sql.SQL("SELECT count(*) FROM {}").format(ident(s, maintenance.RETENTION_STATE))
        )
        assert state.fetchone() == (0,)
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(archive)))


@pytest.mark.parametrize("mode", ["archive", "drop"])
def test_partition_detached_by_a_failed_run_is_finished_by_the_next(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, mode: str
) -> None:
    s = dst_db.schema
    archive = f"{s}_arch"
    _retention_table(admin, s, default=True)
    # The step after the DETACH fails: a session creating the archive schema in an open transaction
    # (archive mode: its locks are never granted in time), a view on the partition (drop mode).
    blocker = psycopg.connect(dst_db.conninfo)
    try:
        if mode == "archive":
            blocker.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(archive)))
            expected: Any = pytest.raises(PartitionError, match=f"archive {s}.ev_p202510: gave up")
        else:
            admin.execute(
                sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(ident(s, "oct"), ident(s, "ev_p202510"))
            )
            expected = pytest.raises(errors.DependentObjectsStillExist)
        with expected:
            maintenance.apply_retention(
                make_runner(lock_timeout="100ms", attempts=2),
                dst_db.table("ev"),
                "3 months",
                mode=mode,
                archive_schema=archive,
                now=NOW,
            )
    finally:
        blocker.close()
    if mode == "drop":
        admin.execute(sql.SQL("DROP VIEW {}").format(ident(s, "oct")))
    assert "ev_p202510" not in names(admin, s, "ev") and count(admin, s, "ev_p202510") == 10  # stranded
    try:
        report = maintenance.apply_retention(
            make_runner(), dst_db.table("ev"), "3 months", mode=mode, archive_schema=archive, now=NOW
        )
        assert report.resumed == [f"{s}.ev_p202510"]
        assert report.detached == [f"{s}.ev_p202511"]
        if mode == "archive":
            assert report.archived == [f"{archive}.ev_p202510", f"{archive}.ev_p202511"]
            assert count(admin, archive, "ev_p202510") == 10
        else:
            assert report.dropped == [f"{s}.ev_p202510", f"{s}.ev_p202511"]
        assert admin.execute(
            "SELECT to_regclass(%s)", (regclass_text(admin, s, "ev_p202510"),)
        ).fetchone() == (None,)
        again = maintenance.apply_retention(
            make_runner(), dst_db.table("ev"), "3 months", mode=mode, archive_schema=archive, now=NOW
        )
        assert again.resumed == [] and again.detached == []
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(archive)))


def test_pending_detach_of_a_recent_partition_is_not_finalized(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    _retention_table(admin, s, default=False)
    blocker = psycopg.connect(dst_db.conninfo)
    blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        blocker.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(s, "ev")))
        with dst_db.connect() as detacher:
            detacher.execute("SET statement_timeout = '1s'")
            with pytest.raises(errors.QueryCanceled):
                detacher.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                        ident(s, "ev"), ident(s, "ev_p202602")
                    )
                )
    finally:
        blocker.close()
    before = attached(admin, s, "ev")
    report = maintenance.apply_retention(make_runner(), dst_db.table("ev"), "3 months", mode="keep", now=NOW)
    # PostgreSQL refuses any other DETACH while one is pending: the old partitions wait for a decision.
    assert report.finalized == [] and report.detached == []
    assert report.skipped == [
        f"{s}.ev_p202602 has a pending detach but lies inside the retention window",
        f"{s}.ev_p202510: not detached while {s}.ev_p202602 has a pending detach",
        f"{s}.ev_p202511: not detached while {s}.ev_p202602 has a pending detach",
    ]
    assert len(report.warnings) == 1 and "DETACH PARTITION" in report.warnings[0]
    assert attached(admin, s, "ev") == before  # ev_p202602 still pending, nothing detached


def test_integer_retention_accepts_templated_digits_and_leaves_an_empty_table_alone(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    create_parent(admin, s, "iv", key="k", key_type="bigint", default=False)
    for lo in range(-3000, 2000, 1000):
        add_partition(admin, s, "iv", f"iv_p{lo}".replace("-", "m"), lo, lo + 1000)
    before = names(admin, s, "iv")
    empty = maintenance.apply_retention(make_runner(), dst_db.table("iv"), "1000", mode="drop")
    assert empty.detached == [] and empty.dropped == [] and names(admin, s, "iv") == before
    assert empty.skipped == [f"{s}.iv holds no rows: no highest key to count the retention from"]
    admin.execute(sql.SQL("INSERT INTO {} (k) SELECT generate_series(0, 1999)").format(ident(s, "iv")))
    report = maintenance.apply_retention(make_runner(), dst_db.table("iv"), " 2500 ", mode="drop")
    # cutoff 1999 - 2500 = -501: [-3000, -2000) and [-2000, -1000) end at or before it.
    assert sorted(report.dropped) == [f"{s}.iv_pm2000", f"{s}.iv_pm3000"]


@pytest.mark.parametrize("value", ["2 parsecs", "0", "", "-1s", "5 minutes"])
def test_bad_lock_timeout_is_a_config_error_naming_the_setting(dst_db: SchemaDb, value: str) -> None:
    with (
        psycopg.connect(dst_db.conninfo) as conn,
        pytest.raises(PartitionConfigError, match=r"^lock_timeout .* is not a positive PostgreSQL duration"),
    ):
        DdlRunner(conn, RecordingLog(), lock_timeout=value)


# -- indexes -------------------------------------------------------------------------------------


def _indexed_table(admin: Conn, s: str) -> list[str]:
    create_parent(admin, s, "ev")
    add_months(admin, s, "ev", [month(2026, 1), month(2026, 2), month(2026, 3)])
    insert_at(admin, s, "ev", [datetime(2026, m, d) for m in (1, 2, 3, 6) for d in range(1, 21)])
    return ["ev_default", "ev_p202601", "ev_p202602", "ev_p202603"]


def test_create_partitioned_index_builds_a_valid_index_on_every_partition(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    parts = _indexed_table(admin, s)
    report = maintenance.create_partitioned_index(
        make_runner(), dst_db.table("ev"), "ev_seq_idx", ["seq", "w"]
    )
    assert sorted(report.indexed) == sorted(f"{s}.{child_index_name(p, 'ev_seq_idx')}" for p in parts)
    assert index_tree(admin, s, "ev", "ev_seq_idx") == (True, dict.fromkeys(parts, True))
    definition = admin.execute(
        "SELECT pg_get_indexdef(%s::regclass)", (regclass_text(admin, s, "ev_seq_idx"),)
    ).fetchone()
    assert definition is not None and "ONLY" in definition[0] and "(seq, w)" in definition[0]

    before = catalog_snapshot(admin, s)
    again = maintenance.create_partitioned_index(
        make_runner(), dst_db.table("ev"), "ev_seq_idx", ["seq", "w"]
    )
    assert again.indexed == [] and len(again.skipped) == len(parts)
    assert catalog_snapshot(admin, s) == before


def test_invalid_leftover_child_index_is_dropped_and_rebuilt(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    parts = _indexed_table(admin, s)
    leftover = child_index_name("ev_p202602", "ev_w_idx")
    # A real failed CREATE INDEX CONCURRENTLY: unique on duplicate data leaves an invalid index behind.
    with pytest.raises(errors.UniqueViolation):
        admin.execute(
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (w)").format(
                sql.Identifier(leftover), ident(s, "ev_p202602")
            )
        )
    state = admin.execute(
        "SELECT indexrelid::int, indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
        (regclass_text(admin, s, leftover),),
    ).fetchone()
    assert state is not None and state[1] is False

    report = maintenance.create_partitioned_index(make_runner(), dst_db.table("ev"), "ev_w_idx", ["w"])
    assert f"{s}.{leftover}" in report.indexed
    rebuilt = admin.execute(
        "SELECT indexrelid::int, indisvalid, indisunique FROM pg_index WHERE indexrelid = %s::regclass",
        (regclass_text(admin, s, leftover),),
    ).fetchone()
    assert rebuilt is not None and rebuilt[0] != state[0] and rebuilt[1:] == (True, False)
    assert index_tree(admin, s, "ev", "ev_w_idx") == (True, dict.fromkeys(parts, True))


def test_index_rerun_after_new_partitions_is_a_no_op(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    parts = _indexed_table(admin, s)
    maintenance.create_partitioned_index(make_runner(), dst_db.table("ev"), "ev_w_idx", ["w"])
    created = maintenance.ensure_partitions(
        make_runner(), dst_db.table("ev"), "month", premake=1, today=TODAY
    )
    assert created.created == [f"{s}.ev_p202604"]
    report = maintenance.create_partitioned_index(make_runner(), dst_db.table("ev"), "ev_w_idx", ["w"])
    assert report.indexed == []
    assert index_tree(admin, s, "ev", "ev_w_idx") == (True, dict.fromkeys([*parts, "ev_p202604"], True))


def test_index_build_retried_after_lock_timeout_ends_valid(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    parts = _indexed_table(admin, s)
    blocker = psycopg.connect(dst_db.conninfo)  # an open write to one partition: CIC waits for it
    insert_at(blocker, s, "ev_p202601", [datetime(2026, 1, 30)])
    release = threading.Timer(0.6, blocker.rollback)
    release.start()
    try:
        report = maintenance.create_partitioned_index(
            make_runner(lock_timeout="100ms", attempts=8, backoff_seconds=0.1),
            dst_db.table("ev"),
            "ev_w_idx",
            ["w"],
        )
    finally:
        release.join()
        blocker.close()
    assert report.retries > 0
    assert index_tree(admin, s, "ev", "ev_w_idx") == (True, dict.fromkeys(parts, True))


def test_per_partition_index_names_fit_63_bytes_with_multibyte_names(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory
) -> None:
    s = dst_db.schema
    table, index = "événements_détaillés", "idx_clé_étrangère_très_longue"  # 58 characters, 66 bytes together
    create_parent(admin, s, table)
    maintenance.ensure_partitions(
        make_runner(), dst_db.table(table), "month", start="2026-01-01", premake=0, today=TODAY
    )
    report = maintenance.create_partitioned_index(make_runner(), dst_db.table(table), index, ["seq"])
    built = [name.split(".", 1)[1] for name in report.indexed]
    assert len(built) == 4 and all(len(n.encode()) <= 63 for n in built) and len(set(built)) == 4
    assert all(n.endswith(f"_{index}") for n in built)
    parts = names(admin, s, table)
    assert index_tree(admin, s, table, index) == (True, dict.fromkeys(parts, True))
    catalog = admin.execute(
        "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE c.relnamespace = %s::regnamespace AND c.relname LIKE %s",
        (sql.Identifier(s).as_string(admin), f"%{index}"),
    ).fetchall()
    assert sorted(r[0] for r in catalog) == sorted([*built, index])  # the names we report are the real ones
    again = maintenance.create_partitioned_index(make_runner(), dst_db.table(table), index, ["seq"])
    assert again.indexed == [] and len(again.skipped) == 4
    # A partition name too long to keep whole: cut on a character boundary, siblings kept apart by a hash.
    long_a = maintenance.child_index_name("é" * 30 + "_p202601", "idx")
    long_b = maintenance.child_index_name("é" * 30 + "_p202602", "idx")
    assert long_a != long_b and len(long_a.encode()) <= 63 and long_a.endswith("_idx")
    long_a.encode().decode()  # valid UTF-8: no half character


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (
            "CREATE INDEX {idx} ON ONLY {t} (w)",
            r"the btree index on \(seq\) of .* asked for: CREATE INDEX .* \(w\)",
        ),
        ("CREATE UNIQUE INDEX {idx} ON ONLY {t} (seq, id, ts)", r"USING btree \(seq, id, ts\)"),
        ("CREATE TABLE {idx} (seq int)", r"a relation of kind 'r'"),
    ],
    ids=["other-columns", "other-shape", "a-table"],
)
def test_same_named_index_of_another_shape_is_refused(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, existing: str, message: str
) -> None:
    s = dst_db.schema
    _indexed_table(admin, s)
    admin.execute(sql.SQL(existing).format(idx=sql.Identifier("ev_seq_idx"), t=ident(s, "ev")))  # type: ignore[arg-type]
    before = catalog_snapshot(admin, s)
    with pytest.raises(PartitionConfigError, match=rf"{s}\.ev_seq_idx already exists and is not .*{message}"):
        maintenance.create_partitioned_index(make_runner(), dst_db.table("ev"), "ev_seq_idx", ["seq"])
    assert catalog_snapshot(admin, s) == before


# -- names that need quoting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "col", "index"),
    [("Order Items", "Created At", "Customer Id", "By Customer"), ("order", "from", "select", "group")],
    ids=["mixed-case-spaces", "reserved-words"],
)
def test_names_that_need_quoting_work_everywhere(
    dst_db: SchemaDb, admin: Conn, make_runner: RunnerFactory, table: str, key: str, col: str, index: str
) -> None:
    s = dst_db.schema
    archive = f"{s} Old {table}"
    create_parent(admin, s, table, key=key, col=col, default=f"{table} default")
    qualified = dst_db.table(table)
    try:
        runner = make_runner()
        ensure = maintenance.ensure_partitions(
            runner, qualified, "month", start="2025-11-01", premake=1, today=date(2026, 1, 15)
        )
        assert ensure.created == [f"{s}.{table}_p{m}" for m in ("202511", "202512", "202601", "202602")]
        stamps = [datetime(2025, 11, 3), datetime(2025, 12, 3), datetime(2026, 1, 3), datetime(2026, 5, 3)]
        insert_at(admin, s, table, stamps, key=key, col=col)
        assert count(admin, s, f"{table} default") == 1
        drain = maintenance.drain_default(runner, qualified, "month")
        assert drain.created == [f"{s}.{table}_p202605"] and drain.rows_moved == 1
        built = maintenance.create_partitioned_index(runner, qualified, index, [col])
        assert len(built.indexed) == 6
        assert index_tree(admin, s, table, index)[0] is True
        retention = maintenance.apply_retention(
            runner, qualified, "1 month", mode="archive", archive_schema=archive, now=datetime(2026, 1, 15)
        )
        assert retention.archived == [f"{archive}.{table}_p202511"]
        assert count(admin, archive, f"{table}_p202511") == 1
        # The SQL-quoted, unqualified spelling resolves through search_path to the same table.
        again = maintenance.ensure_partitions(
            runner, sql.Identifier(table).as_string(admin), "month", premake=1, today=date(2026, 1, 15)
        )
        assert again.created == [] and again.table == f"{s}.{table}"
        assert count(admin, s, table) == 3
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(archive)))


# -- invalid arguments ---------------------------------------------------------------------------


@pytest.fixture
def shapes(dst_db: SchemaDb, admin: Conn) -> SchemaDb:
    """ev (timestamptz, monthly, default), iv (bigint), plain (not partitioned), lst (LIST partitioned)."""
    s = dst_db.schema
    _retention_table(admin, s, default=True)
    create_parent(admin, s, "iv", key="k", key_type="bigint", default=False)
    add_partition(admin, s, "iv", "iv_p0", 0, 100)
    admin.execute(sql.SQL("INSERT INTO {} (k) SELECT generate_series(0, 99)").format(ident(s, "iv")))
    admin.execute(sql.SQL("CREATE TABLE {} (id int, region text)").format(ident(s, "plain")))
    admin.execute(
        sql.SQL("CREATE TABLE {} (id int, region text) PARTITION BY LIST (region)").format(ident(s, "lst"))
    )
    admin.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('eu')").format(
            ident(s, "lst_eu"), ident(s, "lst")
        )
    )
    return dst_db


E = maintenance.ensure_partitions
D = maintenance.drain_default
R = maintenance.apply_retention
X = maintenance.create_partitioned_index
INVALID: list[Any] = [
    # id, call(runner, schema), message pattern ({s} is the schema)
    pytest.param(
        lambda r, s: E(r, f"{s}.no_such_table", "month"),
        r"no_such_table",
        id="unknown-table",
    ),
    pytest.param(
        lambda r, s: E(r, f"{s}.plain", "month"), r"{s}\.plain is not a partitioned table", id="plain"
    ),
    pytest.param(lambda r, s: D(r, f"{s}.lst", "month"), r"{s}\.lst is not partitioned BY RANGE", id="list"),
    pytest.param(
        lambda r, s: E(r, f"{s}.ev", "fortnight"), r"interval 'fortnight' is not one of", id="fortnight"
    ),
    pytest.param(
        lambda r, s: E(r, f"{s}.iv", 0), r"interval 0: an integer interval must be positive", id="zero"
    ),
    pytest.param(lambda r, s: D(r, f"{s}.iv", -1), r"interval -1: an integer interval", id="minus-one"),
    pytest.param(lambda r, s: E(r, f"{s}.iv", "0"), r"interval '0' is not one of", id="zero-text"),
    pytest.param(
        lambda r, s: E(r, f"{s}.iv", "month"), r"interval 'month' does not fit {s}\.iv.*bigint", id="misfit"
    ),
    pytest.param(
        lambda r, s: D(r, f"{s}.ev", 7), r"interval 7 does not fit {s}\.ev.*timestamp with", id="misfit-int"
    ),
    pytest.param(lambda r, s: E(r, f"{s}.ev", "month", premake=-1), r"premake", id="premake"),
    pytest.param(lambda r, s: E(r, f"{s}.ev", "month", start="yesterday"), r"start 'yesterday'", id="start"),
    pytest.param(
        lambda r, s: R(r, f"{s}.ev", "forever", now=NOW), r"retention 'forever' is not a", id="forever"
    ),
    pytest.param(lambda r, s: R(r, f"{s}.ev", "3 parsecs", now=NOW), r"retention '3 parsecs'", id="parsecs"),
    pytest.param(lambda r, s: R(r, f"{s}.ev", 12, now=NOW), r"retention 12 for {s}\.ev", id="retention-int"),
    pytest.param(
        lambda r, s: R(r, f"{s}.ev", "12", now=NOW),
        r"retention '12' for {s}\.ev .* with a unit",
        id="no-unit",
    ),
    pytest.param(
        lambda r, s: R(r, f"{s}.iv", "3 months"), r"retention '3 months' for .*{s}\.iv", id="retention-str"
    ),
    pytest.param(
        lambda r, s: R(r, f"{s}.ev", "3 months", mode="purge"), r"retention mode 'purge'", id="mode"
    ),
    pytest.param(
        lambda r, s: R(r, f"{s}.ev", "-1 month", mode="drop", now=NOW),
        r"retention '-1 month'",
        id="negative-retention",
    ),
    pytest.param(
        lambda r, s: X(r, f"{s}.ev", "i", ["nope"]), r"\['nope'\] are not columns of {s}\.ev", id="column"
    ),
    pytest.param(lambda r, s: X(r, f"{s}.ev", "i", ["w"], method="btree2"), r"method 'btree2'", id="method"),
    pytest.param(lambda r, s: X(r, f"{s}.ev", "i", []), r"columns", id="no-columns"),
]


@pytest.mark.parametrize(("call", "pattern"), INVALID)
def test_invalid_arguments_raise_config_error_and_change_nothing(
    shapes: SchemaDb, admin: Conn, make_runner: RunnerFactory, call: Any, pattern: str
) -> None:
    s = shapes.schema
    before = catalog_snapshot(admin, s)
    with pytest.raises(PartitionConfigError, match=pattern.format(s=s)):
        call(make_runner(), s)
    assert catalog_snapshot(admin, s) == before
    assert count(admin, s, "ev") == 60

"""Partition maintenance benchmark: ensure 36 monthly partitions against pg_partman's create_parent,
the idempotent no-op run, draining 100k rows.

    PYTHONPATH=. .venv/bin/python -m benchmarks.partitions [CONNINFO]

CONNINFO (default $ETL_BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres) names the
server; the benchmark works in its own database, bench_partitions (created if missing), on fresh tables
range-partitioned monthly on a timestamptz, with a primary key including the key and one secondary index:
`bench.events` (ours, with a default partition) and `bench_pm.events` (pg_partman's, which adds its own
default partition). pg_partman 4.7.2 is Debian's postgresql-15-partman (`make bench-deps` installs it),
created in schema `partman`; without it the comparison is reported as skipped. Ensure and create_parent
run in ROUNDS interleaved rounds (alternating which goes first), each on a freshly created table; the
medians are compared. A separate, untimed run of each counts the DDL commands the server executed (an
event trigger on ddl_command_end) beside our client's statements, round trips and transactions.
Results are printed as a table and as JSON; the targets are reported as pass/fail, never asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from etl_platform.partitions import maintenance
from etl_platform.partitions.ddl import DdlRunner
from etl_platform.partitions.intervals import Interval

DEFAULT_CONNINFO = "postgresql://postgres@127.0.0.1:5432/postgres"
DBNAME = "bench_partitions"
SCHEMA = "bench"
TABLE = "events"
BACKFILL_MONTHS = 33  # + the current month + PREMAKE = 36 partitions
PREMAKE = 2
NOOP_RUNS = 5
DRAIN_ROWS = 100_000
DRAIN_MONTHS = 12  # months past the premade ones: only the default partition holds them
ROUNDS = 5
PARTMAN_SCHEMA = "partman"
PM_SCHEMA = "bench_pm"
# ensure at most as long as pg_partman's create_parent (median over the same interleaved rounds)
TARGETS = {"ensure_vs_partman": 1.0, "ensure_36_seconds": 2.0, "noop_median_seconds": 0.2}
_TABLE_DDL = (
    "CREATE TABLE {} (id bigserial, created_at timestamptz NOT NULL, customer_id int NOT NULL, "
    "amount numeric(12, 2) NOT NULL, note text, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)"
)

T = TypeVar("T")


class _CountingLog:
    """DdlRunner's logger: counts the statements instead of printing each one."""

    def __init__(self) -> None:
        self.statements = 0
        self.warnings: list[str] = []

    def info(self, event: Any, /, *args: Any) -> None:
        self.statements += 1

    def warning(self, event: Any, /, *args: Any) -> None:
        self.warnings.append(str(event) % args if args else str(event))


def ensure_database(conninfo: str) -> str:
    """Creates bench_partitions on `conninfo`'s server if missing; returns a conninfo for it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    return make_conninfo(conninfo, dbname=DBNAME, application_name="etl-bench-partitions")


def reset_table(conn: psycopg.Connection[Any], schema: str = SCHEMA, *, default: bool = True) -> None:
    table = sql.Identifier(schema, TABLE)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL(_TABLE_DDL).format(table))
    conn.execute(sql.SQL("CREATE INDEX events_customer_idx ON {} (customer_id)").format(table))
    if default:
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(schema, "events_default"), table
            )
        )


def setup_partman(conn: psycopg.Connection[Any]) -> str | None:
    """pg_partman's version once its extension exists in `partman`; None (and why) when not installed."""
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(PARTMAN_SCHEMA)))
        conn.execute(
            sql.SQL("CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA {}").format(
                sql.Identifier(PARTMAN_SCHEMA)
            )
        )
    except psycopg.Error as exc:
        print(
            f"pg_partman is not available ({exc.diag.message_primary}); run `make bench-deps`",
            file=sys.stderr,
        )
        return None
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'").fetchone()
    return str(row[0]) if row else None


def reset_partman_table(conn: psycopg.Connection[Any]) -> None:
    """A fresh bench_pm.events without partitions, and pg_partman's records of the previous one gone."""
    reset_table(conn, PM_SCHEMA, default=False)
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE parent_table = %s").format(
            sql.Identifier(PARTMAN_SCHEMA, "part_config")
        ),
        (f"{PM_SCHEMA}.{TABLE}",),
    )
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.Identifier(PARTMAN_SCHEMA, f"template_{PM_SCHEMA}_{TABLE}")
        )
    )


def partman_create_parent(conn: psycopg.Connection[Any], start: date) -> int:
    """create_parent, native, monthly, from `start` through PREMAKE months ahead; returns the partitions made."""
    conn.execute(
        sql.SQL(
            "SELECT {}.create_parent(%s, 'created_at', 'native', 'monthly', p_premake := %s, "
            "p_start_partition := %s)"
        ).format(sql.Identifier(PARTMAN_SCHEMA)),
        (f"{PM_SCHEMA}.{TABLE}", PREMAKE, start.isoformat()),
    )
    row = conn.execute(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass AND c.relname <> %s",
        (f"{PM_SCHEMA}.{TABLE}", f"{TABLE}_default"),
    ).fetchone()
    return int(row[0]) if row else 0


def count_ddl(admin: psycopg.Connection[Any], work: Callable[[], object]) -> int:
    """DDL commands the server runs during `work` (an event trigger on ddl_command_end; untimed)."""
    admin.execute("CREATE TABLE IF NOT EXISTS public.bench_ddl_log (tag text)")
    admin.execute("TRUNCATE public.bench_ddl_log")
    admin.execute(
        "CREATE OR REPLACE FUNCTION public.bench_log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO public.bench_ddl_log SELECT command_tag FROM pg_event_trigger_ddl_commands(); END $$"
    )
    admin.execute("DROP EVENT TRIGGER IF EXISTS bench_log_ddl")
    admin.execute(
        "CREATE EVENT TRIGGER bench_log_ddl ON ddl_command_end EXECUTE FUNCTION public.bench_log_ddl()"
    )
    try:
        work()
    finally:
        admin.execute("DROP EVENT TRIGGER IF EXISTS bench_log_ddl")
    row = admin.execute("SELECT count(*) FROM public.bench_ddl_log").fetchone()
    return int(row[0]) if row else 0


def fill_default(conn: psycopg.Connection[Any], first: date, last: date, rows: int) -> int:
    """`rows` rows spread evenly over [first, last), months no partition covers yet: all land in the default."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (created_at, customer_id, amount, note) "
            "SELECT %(first)s::timestamptz + (g - 1) * ((%(last)s::timestamptz - %(first)s::timestamptz) / %(n)s), "
            "g %% 5000, (g %% 10000) / 100.0, md5(g::text) FROM generate_series(1, %(n)s) AS g"
        ).format(sql.Identifier(SCHEMA, TABLE)),
        {"first": first, "last": last, "n": rows},
    )
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, TABLE)))
    return _count(conn, "events_default")


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))).fetchone()
    return int(row[0]) if row else 0


def _timed(work: Callable[[], T]) -> tuple[T, float]:
    began = time.perf_counter()
    result = work()
    return result, time.perf_counter() - began


def run(conninfo: str, rounds: int = ROUNDS) -> dict[str, Any]:
    """Runs the measurements on fresh tables in bench_partitions; returns the results."""
    url = ensure_database(conninfo)
    today = datetime.now(UTC).date()
    month = Interval.parse("month")
    current = month.floor(today)
    assert isinstance(current, date)
    start = month.shift(current, -BACKFILL_MONTHS)
    assert isinstance(start, date)
    label = f"{SCHEMA}.{TABLE}"
    log = _CountingLog()
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as conn:
        admin.execute("SET TimeZone = 'UTC'")
        partman = setup_partman(admin)
        maintenance.prepare_session(conn)
        runner = DdlRunner(conn, log, lock_timeout="2s", attempts=5)

        def ensure() -> maintenance.MaintenanceReport:
            return maintenance.ensure_partitions(
                runner, label, "month", start=start, premake=PREMAKE, today=today
            )

        def ours() -> tuple[maintenance.MaintenanceReport, float]:
            reset_table(admin)
            return _timed(ensure)

        def theirs() -> tuple[int, float]:
            reset_partman_table(admin)
            return _timed(lambda: partman_create_parent(admin, start))

        ours_seconds: list[float] = []
        partman_seconds: list[float] = []
        partman_made: list[int] = []
        first: maintenance.MaintenanceReport | None = None
        cost: dict[str, int] = {}
        for n in range(rounds):  # interleaved, alternating which goes first
            order = ("ours", "partman") if n % 2 else ("partman", "ours")
            for who in order:
                if who == "partman" and partman:
                    made, seconds = theirs()
                    partman_made.append(made)
                    partman_seconds.append(seconds)
                elif who == "ours":
                    before = (runner.statements, runner.round_trips, runner.transactions)
                    report, seconds = ours()
                    ours_seconds.append(seconds)
                    if first is None:
                        first = report
                        cost = {
                            "statements": runner.statements - before[0],
                            "round_trips": runner.round_trips - before[1],
                            "transactions": runner.transactions - before[2],
                        }
        assert first is not None
        reset_table(admin)
        cost["ddl_commands"] = count_ddl(admin, ensure)
        partman_ddl = None
        if partman:
            reset_partman_table(admin)
            partman_ddl = count_ddl(admin, lambda: partman_create_parent(admin, start))
        noops = [_timed(ensure) for _ in range(NOOP_RUNS)]

        drain_first = month.shift(current, PREMAKE + 1)
        drain_last = month.shift(current, PREMAKE + 1 + DRAIN_MONTHS)
        assert isinstance(drain_first, date) and isinstance(drain_last, date)
        in_default = fill_default(admin, drain_first, drain_last, DRAIN_ROWS)
        drained, drain_seconds = _timed(lambda: maintenance.drain_default(runner, label, "month"))
        left_in_default = _count(admin, "events_default")
        total_rows = _count(admin, TABLE)
        server = admin.execute("SHOW server_version").fetchone()

    ensure_median = statistics.median(ours_seconds)
    partman_median = statistics.median(partman_seconds) if partman_seconds else None
    noop_seconds = [seconds for _, seconds in noops]
    results: dict[str, Any] = {
        "kind": "partition-benchmark",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgres": server[0] if server else None,
        "database": DBNAME,
        "table": label,
        "rounds": rounds,
        "ensure_partitions_created": len(first.created),
        "ensure_statements": cost["statements"],
        "ensure_round_trips": cost["round_trips"],
        "ensure_transactions": cost["transactions"],
        "ensure_ddl_commands": cost["ddl_commands"],
        "ensure_seconds": [round(s, 4) for s in ours_seconds],
        "ensure_36_seconds": round(ensure_median, 4),
        "ensure_ms_per_partition": round(1000 * ensure_median / max(len(first.created), 1), 2),
        "partman_version": partman,
        "partman_partitions_created": partman_made[0] if partman_made else None,
        "partman_seconds": [round(s, 4) for s in partman_seconds],
        "partman_median_seconds": round(partman_median, 4) if partman_median else None,
        "partman_statements": 1
        if partman
        else None,  # one create_parent() call: one round trip, one transaction
        "partman_ddl_commands": partman_ddl,
        "ensure_vs_partman": round(ensure_median / partman_median, 3) if partman_median else None,
        "noop_seconds": [round(s, 4) for s in noop_seconds],
        "noop_median_seconds": round(statistics.median(noop_seconds), 4),
        "noop_created": sum(len(r.created) for r, _ in noops),
        "drain_rows_in_default": in_default,
        "drain_rows_moved": drained.rows_moved,
        "drain_partitions_created": len(drained.created),
        "drain_rows_left_in_default": left_in_default,
        "drain_total_rows": total_rows,
        "drain_seconds": round(drain_seconds, 4),
        "drain_rows_per_second": round(drained.rows_moved / drain_seconds) if drain_seconds else None,
        "retries": runner.retries,
        "lock_warnings": log.warnings,
        "targets": TARGETS,
    }
    same_work = len(first.created) == 36 and all(n == 36 for n in partman_made)
    results["pass"] = {
        "ensure_vs_partman": bool(partman_median)
        and same_work
        and results["ensure_vs_partman"] <= TARGETS["ensure_vs_partman"],
        "ensure_36_seconds": len(first.created) == 36 and ensure_median < TARGETS["ensure_36_seconds"],
        "noop_median_seconds": results["noop_created"] == 0
        and results["noop_median_seconds"] < TARGETS["noop_median_seconds"],
    }
    return results


def render(results: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        return "PASS" if results["pass"][key] else "FAIL"

    rows = [
        ("measurement", "result", "target", ""),
        (
            f"ensure {results['ensure_partitions_created']} monthly partitions, median of {results['rounds']}",
            f"{results['ensure_36_seconds']:.3f} s",
            f"36 in < {TARGETS['ensure_36_seconds']:g} s",
            verdict("ensure_36_seconds"),
        ),
        (
            f"pg_partman {results['partman_version'] or '(not installed)'} create_parent, same 36 months",
            f"{results['partman_median_seconds']:.3f} s" if results["partman_median_seconds"] else "-",
            f"ours/partman {results['ensure_vs_partman']}, <= {TARGETS['ensure_vs_partman']:g}",
            verdict("ensure_vs_partman"),
        ),
        (
            f"  ensure: {results['ensure_statements']} statements, {results['ensure_round_trips']} round trips, "
            f"{results['ensure_transactions']} transactions, {results['ensure_ddl_commands']} DDL commands",
            "",
            f"partman: 1 call, {results['partman_ddl_commands']} DDL commands",
            "",
        ),
        (
            f"idempotent no-op, median of {NOOP_RUNS}",
            f"{results['noop_median_seconds']:.4f} s",
            f"< {TARGETS['noop_median_seconds']:g} s",
            verdict("noop_median_seconds"),
        ),
        (
            f"drain {results['drain_rows_moved']:,} rows from the default "
            f"({results['drain_partitions_created']} partitions)",
            f"{results['drain_seconds']:.3f} s",
            f"{results['drain_rows_per_second']:,} rows/s" if results["drain_rows_per_second"] else "-",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    conninfo = args[0] if args else os.environ.get("ETL_BENCH_POSTGRES_URL", DEFAULT_CONNINFO)
    results = run(conninfo)
    print(render(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

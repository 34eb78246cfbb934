"""Write-modes benchmark: StreamingTransferOperator's append, truncate, delete_insert and upsert against
the psql binary COPY pipe, at each scale, in one run.

    make bench                                                   # part of it: 2,000,000 and 10,000,000 rows
    python -m benchmarks.write_modes --scales 200000 --rounds 1  # a quick look
    python -m benchmarks.write_modes --only truncate,upsert --rounds 3

Scenarios (N source rows; the destination has a primary key and btree indexes on customer_id and
on the incremental column order_ts, so index maintenance is real):
- append: the pipe of N rows into the empty destination vs write_mode="append".
- truncate: the destination holds N older rows; write_mode="truncate" refreshes it. Bound: the pipe
  of N rows into the same table emptied beforehand (untimed).
- delete_insert: the destination holds N rows spread evenly over order_ts; the window is the latest
  fifth of that range. Bound: the pipe of the window's rows into the destination from which those
  rows were deleted beforehand (untimed).
- upsert: the destination holds every other key with older values; write_mode="upsert" of all N.
  Bound: the pipe of N rows into the empty destination.
The pipe of N rows into the empty destination is the same measurement for append, truncate and upsert,
so it runs once per round. An operator on an empty source (empty_task) gives the floor for memory and
for process start-up: end-to-end time is the child's spawn-to-exit time minus the empty task's (the
parent polls children every 0.1 s, so each spawn-to-exit time is good to about 0.1 s).

Every method runs in a fresh child (benchmarks.write_mode_methods) after its destination is rebuilt,
frozen and the server checkpointed; --rounds interleaved rounds, medians reported. Around each
child the parent records the server's WAL bytes, the longest wait of a reader querying the
destination every ~20 ms in its own session, and the child's peak RSS. Ratios are pipe seconds /
operator seconds. WAL is the whole server's (PostgreSQL 15 counts none per session): other work on
the server only ever adds to it, so WAL ratios use each method's smallest round, and the rows other
databases wrote meanwhile are reported beside it. Results: benchmarks/results/write-modes-<timestamp>.json and write-modes-latest.json.
The tables live in their own schema (write_modes) of the transfer benchmark's databases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

if __package__ in (None, ""):  # run as a script without PYTHONPATH: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import datagen, db, measure, run
from benchmarks.run import fmt_num, loud, say

SCHEMA = "write_modes"
DEST_TABLE = "orders"
EMPTY_SOURCE_TABLE = "orders_empty"
INCREMENTAL_COLUMN = "order_ts"
SECONDARY_INDEXES = ("customer_id", INCREMENTAL_COLUMN)
WINDOW_FRACTION = 0.2  # the delete_insert window: the latest fifth of the order_ts range
STALE = "stale"  # status of the destination's older rows; the generated source never has it
SCENARIOS = ("append", "truncate", "delete_insert", "upsert")
DEFAULT_SCALES = (2_000_000, 10_000_000)
READER_INTERVAL_SECONDS = 0.02
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0  # when the operator has no lock_timeout attribute
RSS_OVER_EMPTY_LIMIT_MB = 100.0
MODULE = "benchmarks.write_mode_methods"
# Bumped when the generated tables change shape beyond datagen's DDL and fill (e.g. the extra index).
LAYOUT_VERSION = "write-modes-1"


@dataclass(frozen=True)
class Method:
    """One child method and the destination it starts from."""

    name: str
    role: str  # "pipe", "operator" or "empty"
    prefill: str  # the destination's older rows: "none", "all" or "even" (every other key)
    delete_window: bool  # the window's rows deleted from the prefilled destination (untimed)
    description: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("pipe", "pipe", "none", False, "psql binary pipe of N rows into the empty destination"),
        Method("operator_append", "operator", "none", False, 'write_mode="append"'),
        Method("operator_truncate", "operator", "all", False, 'write_mode="truncate" over N older rows'),
        Method("pipe_window", "pipe", "all", True, "psql binary pipe of the window's rows"),
        Method(
            "operator_delete_insert", "operator", "all", False, 'write_mode="delete_insert" of the window'
        ),
        Method("operator_upsert", "operator", "even", False, 'write_mode="upsert" over N/2 older keys'),
        Method("empty_task", "empty", "none", False, "append from an empty source"),
    )
}
BASELINE = {"append": "pipe", "truncate": "pipe", "delete_insert": "pipe_window", "upsert": "pipe"}
OPERATOR = {s: f"operator_{s}" for s in SCENARIOS}
TARGETS = {"append": 1.0, "truncate": 1.0, "delete_insert": 0.7, "upsert": 0.6}  # pipe s / operator s
TRUNCATE_STRETCH = 1.3
TRUNCATE_WAL_LIMIT = 1.2  # operator WAL / pipe WAL


@dataclass(frozen=True)
class Options:
    base_url: str
    src_db: str
    dst_db: str
    scales: tuple[int, ...]
    scenarios: tuple[str, ...]
    rounds: int
    chunk_rows: int
    timeout: float
    regenerate: bool
    results_dir: Path

    @property
    def src_url(self) -> str:
        return db.db_url(self.base_url, self.src_db)

    @property
    def dst_url(self) -> str:
        return db.db_url(self.base_url, self.dst_db)

    @property
    def methods(self) -> tuple[str, ...]:
        """The scenarios' operators and bounds plus the empty task, in catalogue order."""
        wanted = (
            {"empty_task"} | {OPERATOR[s] for s in self.scenarios} | {BASELINE[s] for s in self.scenarios}
        )
        return tuple(name for name in METHODS if name in wanted)


@dataclass(frozen=True)
class Source:
    """The generated source at one scale and the delete_insert window over it."""

    table: str
    rows: int
    generated_seconds: float | None  # None: reused
    prior_generated_seconds: float | None
    window_start: str
    window_end: str
    window_rows: int


# -- command line -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scales",
        default=",".join(str(n) for n in DEFAULT_SCALES),
        help="comma-separated source row counts (default %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians reported")
    parser.add_argument("--only", help=f"comma-separated scenarios, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--skip", help="comma-separated scenarios to leave out")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="the operator's chunk_rows")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a child may run")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the tables even if they fit")
    parser.add_argument("--src-db", default="bench_src")
    parser.add_argument("--dst-db", default="bench_dst")
    parser.add_argument("--results-dir", type=Path, default=run.RESULTS_DIR)
    ns = parser.parse_args(argv)

    def names(text: str | None) -> list[str]:
        picked = [n.strip() for n in (text or "").split(",") if n.strip()]
        unknown = [n for n in picked if n not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
        return picked

    chosen = names(ns.only) or list(SCENARIOS)
    skipped = set(names(ns.skip))
    scenarios = tuple(s for s in SCENARIOS if s in chosen and s not in skipped)
    if not scenarios:
        raise SystemExit("no scenarios selected")
    try:
        scales = tuple(int(x.replace("_", "")) for x in ns.scales.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"--scales takes row counts such as 2000000,10000000, not {ns.scales!r}") from None
    if not scales or min(scales) < 10:
        raise SystemExit("--scales needs row counts of at least 10")
    return Options(
        base_url=os.environ.get("ETL_BENCH_POSTGRES_URL", db.DEFAULT_URL),
        src_db=ns.src_db,
        dst_db=ns.dst_db,
        scales=scales,
        scenarios=scenarios,
        rounds=max(1, ns.rounds),
        chunk_rows=ns.chunk_rows,
        timeout=ns.timeout,
        regenerate=ns.regenerate,
        results_dir=ns.results_dir,
    )


# -- data -------------------------------------------------------------------------------------------


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


def _fingerprint(rows: int, indexed: bool) -> str:
    """What a generated table must carry (as its comment) to be reused: datagen's DDL and fill, the
    row count and our extra index. An interrupted generation never gets the comment."""
    text = f"{LAYOUT_VERSION}|{datagen.ORDERS_DDL}|{datagen.ORDERS_FILL}|{rows}|{indexed}"
    return f"{LAYOUT_VERSION} rows={rows} sha={hashlib.sha256(text.encode()).hexdigest()[:12]}"


def ensure_generated(url: str, table: str, rows: int, *, indexed: bool, regenerate: bool) -> float | None:
    """datagen's orders at `rows` rows in write_modes.<table>, generated only when the fingerprint
    differs; then frozen, so reading it writes no hint-bit WAL. Returns the seconds spent generating."""
    fingerprint = _fingerprint(rows, indexed)
    seconds: float | None = None
    with db.connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        found = conn.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (_ident(table).as_string(conn),)
        ).fetchone()
        if regenerate or found is None or found[0] != fingerprint:
            started = time.perf_counter()
            datagen.create_orders(conn, table=table, schema=SCHEMA, rows=rows)
            if indexed:
                conn.execute(
                    sql.SQL("CREATE INDEX ON {} ({})").format(
                        _ident(table), sql.Identifier(INCREMENTAL_COLUMN)
                    )
                )
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(_ident(table), sql.Literal(fingerprint)))
            conn.commit()
            seconds = round(time.perf_counter() - started, 1)
    with db.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(_ident(table)))
    return seconds


def prepare_data(opts: Options, rows: int) -> Source:
    """The source table (plus an empty one) in the source database, the template of the destination's
    older rows in the destination database, and the delete_insert window."""
    table = f"orders_{rows}"
    generated = ensure_generated(opts.src_url, table, rows, indexed=True, regenerate=opts.regenerate)
    prior = ensure_generated(opts.dst_url, f"prior_{rows}", rows, indexed=False, regenerate=opts.regenerate)
    with db.connect(opts.src_url) as conn:
        if db.table_columns(conn, EMPTY_SOURCE_TABLE, SCHEMA) != db.table_columns(conn, table, SCHEMA):
            datagen.create_empty_like_orders(conn, EMPTY_SOURCE_TABLE, schema=SCHEMA)
        conn.execute(sql.SQL("TRUNCATE {}").format(_ident(EMPTY_SOURCE_TABLE)))
        conn.commit()
        col = sql.Identifier(INCREMENTAL_COLUMN)
        bounds = conn.execute(
            sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(col, _ident(table))
        ).fetchone()
        assert bounds is not None and bounds[0] is not None, f"{SCHEMA}.{table} is empty"
        lo, hi = bounds
        start: datetime = lo + (hi - lo) * (1 - WINDOW_FRACTION)
        end: datetime = hi + timedelta(seconds=1)
        window_rows = db.count_rows(
            conn,
            table,
            SCHEMA,
            sql.SQL("{0} >= {1} AND {0} < {2}").format(col, sql.Literal(start), sql.Literal(end)),
        )
        # Warm the OS page cache, so the first method timed does not read cold pages.
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(table)))
        conn.commit()
    with db.connect(opts.src_url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(_ident(EMPTY_SOURCE_TABLE)))
    return Source(table, rows, generated, prior, start.isoformat(), end.isoformat(), window_rows)


def window_predicate(source: Source) -> sql.Composable:
    col = sql.Identifier(INCREMENTAL_COLUMN)
    return sql.SQL("{0} >= {1} AND {0} < {2}").format(
        col, sql.Literal(source.window_start), sql.Literal(source.window_end)
    )


def drop_destination_tables(conn: db.Conn) -> None:
    """Drops every table in the destination's write_modes schema but the prior_* templates, including
    whatever an operator's swap or a failed run left there."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'prior\\_%%'",
        (SCHEMA,),
    ).fetchall()
    for (name,) in rows:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(_ident(name)))


def reset_destination(dst_url: str, method: Method, source: Source) -> None:
    """Rebuilds the destination as the method starts from it (untimed): its older rows (other values,
    status 'stale', same keys and order_ts) loaded before the indexes are built, then frozen and
    analysed like a settled table, the window deleted where asked, and the server checkpointed."""
    dest = _ident(DEST_TABLE)
    prior = _ident(f"prior_{source.rows}")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in datagen.ORDERS_COLUMNS)
    with db.connect(dst_url, autocommit=True) as conn:
        drop_destination_tables(conn)
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(dest, prior))
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(dest))
        if method.prefill != "none":
            keys = sql.SQL("id % 2 = 0" if method.prefill == "even" else "TRUE")
            conn.execute(
                sql.SQL(
                    "INSERT INTO {dest} ({cols}) SELECT id, 1 + (customer_id * 31) % 50000, order_ts, {stale}, "
                    "amount + 1, quantity + 1, discount, channel, country, 'prior ' || id FROM {prior} WHERE {keys}"
                ).format(dest=dest, cols=cols, stale=sql.Literal(STALE), prior=prior, keys=keys)
            )
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (id)").format(
                dest, sql.Identifier(f"{DEST_TABLE}_pkey")
            )
        )
        for column in SECONDARY_INDEXES:
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} ({})").format(
                    sql.Identifier(f"{DEST_TABLE}_{column}_idx"), dest, sql.Identifier(column)
                )
            )
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(dest))
        if method.delete_window:
            # Not vacuumed afterwards: the operator's own DELETE leaves the same dead rows behind.
            conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(dest, window_predicate(source)))
        conn.execute("CHECKPOINT")


def forget_checkpoints(dst_url: str) -> None:
    """Deletes the checkpoints these runs left (append keeps a finished one for 30 days)."""
    checkpoints = sql.Identifier(db.CHECKPOINT_SCHEMA, "transfer_checkpoints")
    with db.connect(dst_url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (checkpoints.as_string(conn),)).fetchone()
        if exists and exists[0] is not None:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE transfer_id LIKE %s").format(checkpoints),
                (f"{db.BENCH_DAG_ID}/wm\\_%",),
            )
        conn.commit()


def expected_rows(method: Method, source: Source) -> tuple[int, int]:
    """(rows, of which still 'stale') the destination must hold after the method."""
    n = source.rows
    if method.role == "empty":
        return 0, 0
    if method.name in ("pipe_window", "operator_delete_insert"):
        return n, n - source.window_rows  # the rows outside the window keep their older values
    return n, 0


# -- measuring around a child -----------------------------------------------------------------------


class ReaderProbe:
    """A reader of the destination in its own session: a point query plus a short range count every
    ~20 ms, each timed. Its longest wait is how long a dashboard querying the table would have hung."""

    def __init__(self, url: str, max_id: int, interval: float = READER_INTERVAL_SECONDS):
        self.url = url
        self.max_id = max(max_id, 2)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latencies: list[float] = []
        self._worst = -1.0
        self._worst_at: float | None = None
        self._errors: list[str] = []
        self._started = 0.0

    def start(self) -> None:
        self._stop.clear()
        self._latencies, self._errors, self._worst, self._worst_at = [], [], -1.0, None
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="reader-probe", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Ends the probe (after its query in flight) and returns what it saw."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        lat = sorted(self._latencies)
        worst = lat[-1] if lat else None
        return {
            "queries": len(lat),
            "max_ms": round(worst * 1000, 1) if worst is not None else None,
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 1) if lat else None,
            "median_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
            "worst_at_seconds": round(self._worst_at, 2) if self._worst_at is not None else None,
            "errors": len(self._errors),
            "first_errors": self._errors[:3],
        }

    def _loop(self) -> None:
        dest = _ident(DEST_TABLE)
        point = sql.SQL("SELECT id FROM {} WHERE id = %s").format(dest)
        count = sql.SQL("SELECT count(*) FROM {} WHERE id < 1000").format(dest)
        conn: db.Conn | None = None
        while not self._stop.is_set():
            if conn is None or conn.closed:
                try:
                    conn = db.connect(self.url, autocommit=True)
                    conn.execute("SET statement_timeout = '1h'")
                except psycopg.Error as exc:
                    self._errors.append(f"connect: {exc}")
                    conn = None
                    self._stop.wait(self.interval)
                    continue
            key = 2 * random.randint(1, self.max_id // 2)  # an even key: present whenever rows are
            began = time.perf_counter()
            try:
                conn.execute(point, (key,)).fetchall()
                conn.execute(count).fetchone()
            except psycopg.Error as exc:
                self._errors.append(f"{type(exc).__name__}: {exc}".strip())
            took = time.perf_counter() - began
            if took > self._worst:
                self._worst, self._worst_at = took, began - self._started
            self._latencies.append(took)
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()


class ServerCounters:
    """WAL position and other databases' row writes, read through one autocommit control session.

    WAL is the whole cluster's: the other databases' tuple writes tell when someone else's work
    (tests on the same server) is in a method's WAL figure.
    """

    def __init__(self, base_url: str, ours: list[str]):
        self.conn = db.connect(db.db_url(base_url, "postgres"), autocommit=True)
        self.ours = ours

    def lsn(self) -> str:
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def wal_since(self, lsn: str) -> int:
        row = self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,)).fetchone()
        assert row is not None
        return int(row[0])

    def other_writes(self) -> dict[int, int]:
        """Rows inserted, updated or deleted so far, per database other than ours (by OID)."""
        rows = self.conn.execute(
            "SELECT datid, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname IS NOT NULL AND datname <> ALL(%s)",
            (self.ours,),
        ).fetchall()
        return {int(oid): int(n) for oid, n in rows}

    @staticmethod
    def writes_between(before: dict[int, int], after: dict[int, int]) -> int:
        """Rows written in between: a database dropped meanwhile (tests drop theirs) takes its
        counters with it, so only growth counts; one created meanwhile counts from zero."""
        return sum(max(0, n - before.get(oid, 0)) for oid, n in after.items())

    def close(self) -> None:
        self.conn.close()


def lock_timeout_seconds(dst_url: str, value: str | None) -> tuple[float, str]:
    """The operator's lock_timeout in seconds, parsed by PostgreSQL itself; 5 s when it has none."""
    if value is None:
        return DEFAULT_LOCK_TIMEOUT_SECONDS, "default: the operator has no lock_timeout attribute"
    with db.connect(dst_url) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (value,))
        row = conn.execute("SELECT setting::float8 FROM pg_settings WHERE name = 'lock_timeout'").fetchone()
        conn.rollback()
    assert row is not None
    return float(row[0]) / 1000.0, f"StreamingTransferOperator(...).lock_timeout = {value!r}"


@dataclass
class Harness:
    """What every child run of one benchmark shares."""

    opts: Options
    env: dict[str, str]
    sink: measure.StatsdSink
    watcher: db.ForeignSessionWatcher
    counters: ServerCounters
    log_dir: Path


def run_one(h: Harness, method: Method, source: Source, round_no: int) -> dict[str, Any]:
    """Rebuilds the destination, runs the child with the reader probing, checks the destination."""
    opts = h.opts
    app_name = f"etl-bench-wm-{method.name}"
    reset_destination(opts.dst_url, method, source)
    args = {
        "src_conn_id": run.SRC_CONN_ID,
        "dst_conn_id": run.DST_CONN_ID,
        "schema": SCHEMA,
        "source_table": source.table,
        "empty_source_table": EMPTY_SOURCE_TABLE,
        "destination_table": DEST_TABLE,
        "chunk_rows": opts.chunk_rows,
        "incremental_column": INCREMENTAL_COLUMN,
        "window_start": source.window_start,
        "window_end": source.window_end,
        "run_id": f"bench-{uuid.uuid4()}",
    }
    say(f"-- {method.name} ({source.rows:,} rows, round {round_no}) ...", end="")
    load_before = os.getloadavg()
    provider = run.provider_fingerprint()
    reader = ReaderProbe(opts.dst_url, source.rows)
    h.watcher.start([app_name, run.OPERATOR_APP_NAME])
    h.sink.window()
    reader.start()
    others_before = h.counters.other_writes()
    lsn_before = h.counters.lsn()
    outcome = measure.run_method(
        method.name,
        args,
        env={**h.env, "PGAPPNAME": app_name},
        log_path=h.log_dir / f"{method.name}-n{source.rows}-r{round_no}.log",
        cap_seconds=None,
        timed_out_after=opts.timeout,
        watch=h.watcher,
        module=MODULE,
    )
    wal = h.counters.wal_since(lsn_before)
    others = h.counters.writes_between(others_before, h.counters.other_writes())
    h.watcher()
    foreign = h.watcher.take()
    leftovers = 0
    if not outcome.ok or outcome.timed_out:
        # Before the reader stops: a killed child's backend may still hold the lock it waits on.
        leftovers = db.terminate_leftover_sessions(
            opts.base_url, [opts.src_db, opts.dst_db], [app_name, run.OPERATOR_APP_NAME]
        )
    reading = reader.stop()
    statsd = h.sink.take()
    try:
        with db.connect(opts.dst_url) as conn:
            in_dest = db.count_rows(conn, DEST_TABLE, SCHEMA)
            stale = db.count_rows(conn, DEST_TABLE, SCHEMA, sql.SQL("status = {}").format(sql.Literal(STALE)))
    except psycopg.Error as exc:  # a failed swap may leave no destination table at all
        loud(f"!!! {method.name}: cannot count the destination: {exc}")
        in_dest = stale = -1
    want_rows, want_stale = expected_rows(method, source)
    result = outcome.result
    if outcome.timed_out:
        status = "timed out"
    elif not outcome.ok:
        status = "error"
    elif (in_dest, stale) != (want_rows, want_stale):
        status = "MISMATCH"
    else:
        status = "ok"
    summary = result.get("summary") or {}
    engine = summary.get("seconds")
    seconds = outcome.work_seconds
    peak_rss = result.get("peak_rss_mb_override", outcome.peak_rss_mb)
    record = {
        "method": method.name,
        "role": method.role,
        "rows": source.rows,
        "round": round_no,
        "status": status,
        "seconds": round(seconds, 3) if seconds is not None else None,
        "engine_seconds": engine,
        "spawn_to_exit_seconds": outcome.spawn_to_exit_seconds,
        "outside_engine_seconds": round(outcome.spawn_to_exit_seconds - engine, 3)
        if engine is not None
        else None,
        "execute_outside_engine_seconds": round(seconds - engine, 3)
        if engine is not None and seconds is not None
        else None,
        "rows_expected": want_rows,
        "rows_in_destination": in_dest,
        "stale_expected": want_stale,
        "stale_in_destination": stale,
        "wal_bytes": wal,
        "other_databases_tuple_writes": others,
        "reader": reading,
        "peak_rss_mb": round(peak_rss, 1),
        "child_process_peak_rss_mb": outcome.peak_rss_mb,
        "user_cpu_seconds": outcome.user_cpu_seconds,
        "system_cpu_seconds": outcome.system_cpu_seconds,
        "strategy": result.get("strategy"),
        "strategy_note": result.get("strategy_note"),
        "operator_lock_timeout": result.get("operator_lock_timeout"),
        "returncode": outcome.returncode,
        "loadavg_before": [round(x, 2) for x in load_before],
        "statsd_rows": statsd["counters"].get("airflow.etl.transfer.rows"),
        "leftover_sessions_ended": leftovers,
        "foreign_sessions": foreign,
        "provider_tree_hash": provider,
        "provider_hash": result.get("provider_modules_hash"),
        "child": result,
        "log": _relative(outcome.log_path),
    }
    strategy = f", strategy {record['strategy']}" if record["strategy"] else ""
    say(
        f" {status}: {fmt_num(seconds, 2)} s (exit after {outcome.spawn_to_exit_seconds:.2f} s), "
        f"WAL {wal / 2**20:,.0f} MB, reader max {fmt_num(reading['max_ms'], 0)} ms, "
        f"RSS {peak_rss:.0f} MB{strategy}" + (f"  [{result.get('error')}]" if "error" in result else "")
    )
    if foreign:
        loud(
            f"!!! {len(foreign)} foreign session(s) in {opts.src_db}/{opts.dst_db} during {method.name}: {foreign}"
        )
    if status == "MISMATCH":
        loud(
            f"!!! {method.name}: the destination holds {in_dest:,} rows ({stale:,} stale), expected "
            f"{want_rows:,} ({want_stale:,} stale); log: {record['log']}"
        )
    elif status != "ok":
        loud(f"!!! {method.name} {status} (exit {outcome.returncode}); see {record['log']}")
    return record


def _relative(path: str) -> str:
    p = Path(path)
    return str(p.relative_to(measure.REPO_ROOT)) if p.is_relative_to(measure.REPO_ROOT) else path


# -- aggregation ------------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def aggregate_methods(runs: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method: medians over its successful rounds (time, WAL), maxima of RSS and reader wait."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in runs if r["method"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        waits = [r["reader"]["max_ms"] for r in ok if r["reader"]["max_ms"] is not None]
        out[name] = {
            "description": METHODS[name].description,
            "status": next((r["status"] for r in mine if r["status"] != "ok"), "ok") if mine else "not run",
            "rounds_ok": len(ok),
            "seconds": _median([r["seconds"] for r in ok]),
            "seconds_all": [r["seconds"] for r in mine],
            "engine_seconds": _median([r["engine_seconds"] for r in ok]),
            "spawn_to_exit_seconds": _median([r["spawn_to_exit_seconds"] for r in ok]),
            "outside_engine_seconds": _median([r["outside_engine_seconds"] for r in ok]),
            "execute_outside_engine_seconds": _median([r["execute_outside_engine_seconds"] for r in ok]),
            "wal_bytes": _median([r["wal_bytes"] for r in ok]),
            # Other sessions on the server only ever add WAL: the smallest round is the best estimate.
            "wal_bytes_min": min((r["wal_bytes"] for r in ok), default=None),
            "other_databases_tuple_writes": sum(r["other_databases_tuple_writes"] for r in mine),
            "reader_max_ms": max(waits) if waits else None,
            "reader_max_ms_median": _median(waits),
            "reader_errors": sum(r["reader"]["errors"] for r in mine),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
            "strategies": sorted({str(r["strategy"]) for r in ok if r["strategy"] is not None}),
            "strategy_notes": sorted({str(r["strategy_note"]) for r in ok if r["strategy_note"]}),
            "foreign_sessions": sum(len(r["foreign_sessions"]) for r in mine),
        }
    return out


def end_to_end(runs: list[dict[str, Any]], name: str) -> float | None:
    """Median over rounds of (the operator's spawn-to-exit - the same round's empty task's): the
    time a user waits for the rows, without what any task costs before it moves one."""
    empty = {
        r["round"]: r["spawn_to_exit_seconds"]
        for r in runs
        if r["method"] == "empty_task" and r["status"] == "ok"
    }
    diffs = [
        r["spawn_to_exit_seconds"] - empty[r["round"]]
        for r in runs
        if r["method"] == name and r["status"] == "ok" and r["round"] in empty
    ]
    return round(statistics.median(diffs), 3) if diffs else None


def aggregate_scenarios(
    runs: list[dict[str, Any]], methods: dict[str, dict[str, Any]], scenarios: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per scenario: the bound's and the operator's figures side by side, and their ratios."""
    empty = methods.get("empty_task", {})
    out: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        pipe, op = methods[BASELINE[scenario]], methods[OPERATOR[scenario]]
        e2e = end_to_end(runs, OPERATOR[scenario])
        rss_over = (
            round(op["peak_rss_mb"] - empty["peak_rss_mb"], 1)
            if op.get("peak_rss_mb") is not None and empty.get("peak_rss_mb") is not None
            else None
        )
        out[scenario] = {
            "baseline": BASELINE[scenario],
            "operator": OPERATOR[scenario],
            "status": "ok" if pipe["status"] == op["status"] == "ok" else f"{pipe['status']}/{op['status']}",
            "strategies": op["strategies"],
            "strategy_notes": op["strategy_notes"],
            "pipe_seconds": pipe["seconds"],
            "operator_seconds": op["seconds"],
            "operator_engine_seconds": op["engine_seconds"],
            "operator_end_to_end_seconds": e2e,
            "operator_spawn_to_exit_seconds": op["spawn_to_exit_seconds"],
            "operator_outside_engine_seconds": op["outside_engine_seconds"],
            "operator_execute_outside_engine_seconds": op["execute_outside_engine_seconds"],
            "ratio": _ratio(pipe["seconds"], op["seconds"]),
            "ratio_engine": _ratio(pipe["seconds"], op["engine_seconds"]),
            "ratio_end_to_end": _ratio(pipe["seconds"], e2e),
            "other_databases_tuple_writes": pipe["other_databases_tuple_writes"]
            + op["other_databases_tuple_writes"],
            "foreign_sessions": pipe["foreign_sessions"] + op["foreign_sessions"],
            "pipe_wal_bytes": pipe["wal_bytes"],
            "operator_wal_bytes": op["wal_bytes"],
            "pipe_wal_bytes_min": pipe["wal_bytes_min"],
            "operator_wal_bytes_min": op["wal_bytes_min"],
            "wal_ratio": _ratio(op["wal_bytes_min"], pipe["wal_bytes_min"]),
            "wal_ratio_of_medians": _ratio(op["wal_bytes"], pipe["wal_bytes"]),
            "pipe_reader_max_ms": pipe["reader_max_ms"],
            "operator_reader_max_ms": op["reader_max_ms"],
            "operator_peak_rss_mb": op["peak_rss_mb"],
            "operator_rss_over_empty_mb": rss_over,
        }
    return out


def _noise(other_rows: int, foreign_sessions: int) -> str:
    """Why a WAL figure may hold someone else's WAL, or nothing."""
    parts = []
    if other_rows:
        parts.append(f"other databases wrote {other_rows:,} rows")
    if foreign_sessions:
        parts.append(f"{foreign_sessions} foreign session(s) used the benchmark databases")
    return f"{' and '.join(parts)} meanwhile: their WAL is in the figures" if parts else ""


def evaluate_targets(scenarios: dict[str, dict[str, Any]], lock_timeout: float) -> list[dict[str, Any]]:
    """The targets, each PASS / MISS / n/a (never raised on): speed (pipe s / operator s), truncate's
    WAL, the longest reader wait against the operator's lock_timeout, memory over the empty task."""
    targets: list[dict[str, Any]] = []

    def check(label: str, value: float | None, limit: float, at_least: bool, detail: str = "") -> None:
        ok = None if value is None else (value >= limit if at_least else value <= limit)
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        targets.append({"target": label, "value": value, "limit": limit, "status": status, "detail": detail})

    for scenario, s in scenarios.items():
        check(
            f"{scenario}: pipe s / operator execute s >= {TARGETS[scenario]}",
            s["ratio"],
            TARGETS[scenario],
            True,
        )
        if scenario == "append":
            check("append: pipe s / operator end-to-end s >= 1.0", s["ratio_end_to_end"], 1.0, True)
        if scenario == "truncate":
            check(
                f"truncate (stretch): pipe s / operator execute s >= {TRUNCATE_STRETCH}",
                s["ratio"],
                TRUNCATE_STRETCH,
                True,
            )
            check(
                f"truncate: operator WAL / pipe WAL (smallest rounds) <= {TRUNCATE_WAL_LIMIT}",
                s["wal_ratio"],
                TRUNCATE_WAL_LIMIT,
                False,
                _noise(s["other_databases_tuple_writes"], s["foreign_sessions"]),
            )
    for scenario, s in scenarios.items():
        wait = s["operator_reader_max_ms"]
        check(
            f"{scenario}: longest reader wait <= lock_timeout ({lock_timeout:g} s), seconds",
            None if wait is None else round(wait / 1000, 3),
            lock_timeout,
            False,
        )
    for scenario, s in scenarios.items():
        check(
            f"{scenario}: peak RSS over the empty task <= {RSS_OVER_EMPTY_LIMIT_MB:.0f} MB",
            s["operator_rss_over_empty_mb"],
            RSS_OVER_EMPTY_LIMIT_MB,
            False,
        )
    return targets


# -- one scale --------------------------------------------------------------------------------------


def run_scale(h: Harness, rows: int) -> dict[str, Any]:
    """Prepares the data at `rows` and runs every selected method in --rounds interleaved rounds."""
    opts = h.opts
    say(f"== write modes at {rows:,} rows: {', '.join(opts.scenarios)}; {opts.rounds} round(s)")
    t0 = time.perf_counter()
    source = prepare_data(opts, rows)
    made = [
        f"{what} generated in {secs:.0f} s"
        for what, secs in (
            ("source", source.generated_seconds),
            ("older rows", source.prior_generated_seconds),
        )
        if secs is not None
    ]
    say(
        f"   source {opts.src_db}.{SCHEMA}.{source.table}: {rows:,} rows ({'; '.join(made) or 'reused'}), "
        f"window [{source.window_start}, {source.window_end}) = {source.window_rows:,} rows; "
        f"prepared in {time.perf_counter() - t0:.0f} s"
    )
    runs: list[dict[str, Any]] = []
    for round_no in range(1, opts.rounds + 1):
        for name in opts.methods:
            runs.append(run_one(h, METHODS[name], source, round_no))
    forget_checkpoints(opts.dst_url)
    with db.connect(opts.dst_url, autocommit=True) as conn:
        drop_destination_tables(conn)  # the scratch destination need not hold disk between runs
    methods = aggregate_methods(runs, opts.methods)
    scenarios = aggregate_scenarios(runs, methods, opts.scenarios)
    reported = next((r["operator_lock_timeout"] for r in runs if r["operator_lock_timeout"]), None)
    lock_timeout, lock_source = lock_timeout_seconds(opts.dst_url, reported)
    return {
        "rows": rows,
        "source": {
            "table": f"{opts.src_db}.{SCHEMA}.{source.table}",
            "generated_seconds": source.generated_seconds,
            "older_rows_template": f"{opts.dst_db}.{SCHEMA}.prior_{rows}",
            "older_rows_generated_seconds": source.prior_generated_seconds,
        },
        "destination": {
            "table": f"{opts.dst_db}.{SCHEMA}.{DEST_TABLE}",
            "indexes": ["primary key (id)", *(f"btree ({c})" for c in SECONDARY_INDEXES)],
        },
        "window": {
            "column": INCREMENTAL_COLUMN,
            "start": source.window_start,
            "end": source.window_end,
            "rows": source.window_rows,
            "fraction": WINDOW_FRACTION,
        },
        "lock_timeout_seconds": lock_timeout,
        "lock_timeout_source": lock_source,
        "methods": methods,
        "scenarios": scenarios,
        "targets": evaluate_targets(scenarios, lock_timeout),
        "runs": runs,
    }


# -- output -----------------------------------------------------------------------------------------


def _grid(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def format_scale(doc: dict[str, Any], scale: dict[str, Any]) -> str:
    """The time table, the cost table, the empty task, notes and the targets of one scale."""
    sc = scale["scenarios"]
    lines = [f"write modes at {scale['rows']:,} rows (medians of {doc['options']['rounds']} round(s))", ""]
    time_rows: list[tuple[str, ...]] = [
        ("scenario", "status", "pipe s", "op execute s", "op engine s", "op end-to-end s",
         "pipe/execute", "pipe/engine", "pipe/e2e", "outside engine s", "of which in execute s", "strategy"),
    ]  # fmt: skip
    for name, s in sc.items():
        time_rows.append(
            (
                name,
                s["status"],
                fmt_num(s["pipe_seconds"], 2),
                fmt_num(s["operator_seconds"], 2),
                fmt_num(s["operator_engine_seconds"], 2),
                fmt_num(s["operator_end_to_end_seconds"], 2),
                fmt_num(s["ratio"], 2),
                fmt_num(s["ratio_engine"], 2),
                fmt_num(s["ratio_end_to_end"], 2),
                fmt_num(s["operator_outside_engine_seconds"], 2),
                fmt_num(s["operator_execute_outside_engine_seconds"], 2),
                ",".join(s["strategies"]) or "-",
            )
        )
    lines += _grid(time_rows)
    lines.append("")
    cost_rows: list[tuple[str, ...]] = [
        ("scenario", "pipe WAL MB min", "op WAL MB min", "op/pipe WAL", "reader max ms pipe", "reader max ms op",
         "op peak RSS MB", "op RSS over empty MB"),
    ]  # fmt: skip
    for name, s in sc.items():
        cost_rows.append(
            (
                name,
                _mb(s["pipe_wal_bytes_min"]),
                _mb(s["operator_wal_bytes_min"]),
                fmt_num(s["wal_ratio"], 2),
                fmt_num(s["pipe_reader_max_ms"], 0),
                fmt_num(s["operator_reader_max_ms"], 0),
                fmt_num(s["operator_peak_rss_mb"], 0),
                fmt_num(s["operator_rss_over_empty_mb"], 1),
            )
        )
    lines += _grid(cost_rows)
    empty = scale["methods"].get("empty_task", {})
    lines.append("")
    lines.append(
        f"empty task: {fmt_num(empty.get('spawn_to_exit_seconds'), 2)} s spawn to exit, "
        f"{fmt_num(empty.get('peak_rss_mb'), 0)} MB peak RSS; window {scale['window']['rows']:,} rows; "
        f"lock_timeout {scale['lock_timeout_seconds']:g} s ({scale['lock_timeout_source']})"
    )
    for name, s in sc.items():
        for note in s["strategy_notes"]:
            lines.append(f"{name} strategy note: {note}")
    noisy = {
        n: m["other_databases_tuple_writes"]
        for n, m in scale["methods"].items()
        if m["other_databases_tuple_writes"]
    }
    if noisy:
        lines.append(
            "WAL is the server's, the smallest of the rounds; other databases wrote rows meanwhile "
            f"(their WAL is in the figures): {noisy}"
        )
    foreign = {n: m["foreign_sessions"] for n, m in scale["methods"].items() if m["foreign_sessions"]}
    if foreign:
        lines.append(f"FOREIGN SESSIONS in the benchmark databases (timing and WAL disturbed): {foreign}")
    loads = [r["loadavg_before"][0] for r in scale["runs"]]
    cores = doc["environment"]["cpu_count"] or 1
    if loads:
        busy = " -- BUSY MACHINE: timings are noisy" if max(loads) > cores else ""
        lines.append(
            f"1-min load average before the methods: {min(loads):.2f}-{max(loads):.2f} on {cores} CPUs{busy}"
        )
    if doc.get("provider_code_changed"):
        lines.append(
            f"WARNING: the operator's code changed during the run: versions {doc['provider_hashes']}"
        )
    lines.append("targets:")
    for t in scale["targets"]:
        shown = "-" if t["value"] is None else f"{t['value']}"
        detail = f" -- {t['detail']}" if t.get("detail") else ""
        lines.append(f"  [{t['status']:>4}] {t['target']}: {shown} (limit {t['limit']}){detail}")
    return "\n".join(lines)


def write_results(doc: dict[str, Any], results_dir: Path) -> Path:
    """results/write-modes-<timestamp>.json and results/write-modes-latest.json (rewritten per scale)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"write-modes-{doc['timestamp']}.json"
    text = json.dumps(doc, indent=2, default=str)
    path.write_text(text)
    (results_dir / "write-modes-latest.json").write_text(text)
    return path


# -- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    say(f"== write-modes benchmark {stamp}: scales {', '.join(f'{n:,}' for n in opts.scales)}")
    for name in (opts.src_db, opts.dst_db):
        if db.ensure_database(opts.base_url, name):
            say(f"   created database {name}")
    forget_checkpoints(opts.dst_url)
    sink = measure.StatsdSink()
    env = run.operator_env(opts.results_dir, opts.src_url, opts.dst_url, sink.port)
    environment = run.environment(
        run.Options(
            base_url=opts.base_url, src_db=opts.src_db, dst_db=opts.dst_db, rows=opts.scales[0], methods=(),
            cap=0.0, timeout=opts.timeout, repeat=opts.rounds, regenerate=opts.regenerate,
            chunk_rows=opts.chunk_rows, page_size=0, pandas_chunk_rows=0, results_dir=opts.results_dir,
        )
    )  # fmt: skip
    doc: dict[str, Any] = {
        "kind": "write-modes-benchmark",
        "timestamp": stamp,
        "options": {
            "scales": list(opts.scales),
            "scenarios": list(opts.scenarios),
            "methods": list(opts.methods),
            "rounds": opts.rounds,
            "chunk_rows": opts.chunk_rows,
            "parallelism": 1,
            "timeout_seconds": opts.timeout,
            "src_db": opts.src_db,
            "dst_db": opts.dst_db,
            "schema": SCHEMA,
        },
        "environment": environment,
        "scales": [],
    }
    harness = Harness(
        opts=opts,
        env=env,
        sink=sink,
        watcher=db.ForeignSessionWatcher(opts.base_url, [opts.src_db, opts.dst_db]),
        counters=ServerCounters(opts.base_url, [opts.src_db, opts.dst_db]),
        log_dir=opts.results_dir / "logs" / f"write-modes-{stamp}",
    )
    path = None
    try:
        for rows in opts.scales:
            scale = run_scale(harness, rows)
            doc["scales"].append(scale)
            all_runs = [r for s in doc["scales"] for r in s["runs"]]
            doc["provider_hashes"] = sorted({r["provider_hash"] for r in all_runs if r["provider_hash"]})
            doc["provider_code_changed"] = run.provider_code_changed(all_runs)
            doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            path = write_results(doc, opts.results_dir)
            say("")
            say(format_scale(doc, scale))
            say("")
    finally:
        sink.close()
        harness.watcher.close()
        harness.counters.close()
    if doc.get("provider_code_changed"):
        loud("!!! the operator's code changed while the benchmark ran; each run records its provider_hash")
    say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

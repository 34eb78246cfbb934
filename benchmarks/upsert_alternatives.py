"""How write_mode="upsert" should write: the alternatives, measured against the psql binary COPY pipe.

    python -m benchmarks.upsert_alternatives --rows 2000000 --rounds 3
    python -m benchmarks.upsert_alternatives --rows 200000 --rounds 1 --only a_on_conflict,chosen

Workload: the source holds N generated orders (benchmarks.datagen); the destination (primary key plus a
btree index on customer_id) already holds every other key with other values, so an upsert of all N
updates N/2 rows (customer_id included, so no update is HOT) and inserts N/2. The bound is the psql
binary COPY pipe of the N rows into the same table, empty, with the same indexes.

Each round runs every alternative right after a pipe run of its own, each after the destination was
rebuilt (untimed: older rows loaded, indexes built, frozen, analysed, server checkpointed); the order
of the alternatives rotates from round to round. A method's ratio is the seconds of the pipe run just
before it / its own seconds (on a shared server the load changes from minute to minute: a pipe run
minutes away says little); the table shows medians over the rounds. Beside wall time, the CPU
seconds of the destination's backends (read from /proc when the server is local and readable):
the destination's work, which other sessions on the machine disturb far less than the wall time.
Every upsert's result is checked: N rows, no older row left, sums of two columns equal to the source's.

The alternatives run through the transfer engine (same source reads, checkpoints and commits as the
operator); each hand-written variant is a ChunkWriter below that the engine is given instead of the one
strategies.writer_for would pick. "chosen" is what etl_platform.transfer.upsert does today (no patch).
WAL bytes are the server's (other sessions on a shared server add to them).
Tables live in schema upsert_alt of the transfer benchmark's databases (bench_src, bench_dst).

Measured 2026-12-03 (--rows 2000000 --rounds 5, PostgreSQL 15, 2 shared cores, shared_buffers 128MB;
median paired ratio to the pipe, whose median was 5.28 s; destination CPU ratio beside it):
  a 0.421/0.434  b (MERGE) 0.450/0.453  c (stage) 0.434/0.437  c2 0.444/0.453  d1 0.443/0.458
  d2 0.435/0.447  d3 0.420/0.432  d3s 0.385/0.391  d4 0.434/0.441  d5 (not an upsert) 0.521/0.539
  chosen 0.444/0.458  chosen_big_chunks 0.453/0.455  chosen_parallel2 0.573 (CPU summed over both streams)
No safe single-stream variant reaches 0.6: the ON CONFLICT statement alone, fed from a table already
in the destination, took about 2x the pipe. The choice (etl_platform.transfer.upsert): (a) without the
DISTINCT ON sort where the key is provably unique per chunk (d1), the safe variant with the least work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
from psycopg import sql

if __package__ in (None, ""):  # run as a script without PYTHONPATH: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "provider"))

from benchmarks import datagen, db
from benchmarks.methods import _psql_target, run_pipe
from etl_platform.transfer import engine as engine_module
from etl_platform.transfer.errors import StagingLostError
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.spec import TransferSpec
from etl_platform.transfer.staged import StagedWriter
from etl_platform.transfer.writers import ChunkWriter, identity_always, idents, overriding, row_count

SCHEMA = "upsert_alt"
DEST_TABLE = "orders"
SECONDARY_INDEX = "customer_id"
STALE = "stale"  # status of the destination's older rows; the generated source never has it
LAYOUT_VERSION = "upsert-alt-1"
APP_NAME = "upsert-alternatives"  # the timed sessions' application_name (PGAPPNAME)
CHUNK = sql.Identifier("_etl_chunk")
Conn = psycopg.Connection[Any]
Statement = sql.SQL | sql.Composed


# -- the hand-written variants, as ChunkWriters the engine drives ----------------------------------


def _updates(plan: TransferPlan, columns: tuple[str, ...]) -> list[str]:
    keep = set(plan.conflict_columns) | identity_always(plan, columns)
    return [c for c in columns if c not in keep]


def _set_from(plan: TransferPlan, columns: tuple[str, ...], alias: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{0} = {1}.{0}").format(sql.Identifier(c), sql.Identifier(alias))
        for c in _updates(plan, columns)
    )


def _match(plan: TransferPlan, left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{1}.{0} = {2}.{0}").format(sql.Identifier(c), sql.Identifier(left), sql.Identifier(right))
        for c in plan.conflict_columns
    )


def _last_per_conflict(plan: TransferPlan, columns: tuple[str, ...], table: sql.Composable) -> sql.Composable:
    """The rows of `table`, the last (highest key) per conflict key: what today's writer inserts."""
    return sql.SQL("SELECT DISTINCT ON ({conf}) {cols} FROM {table} ORDER BY {conf}, {key} DESC").format(
        conf=idents(plan.conflict_columns), cols=idents(columns), table=table, key=plan.key_ident
    )


# Per-chunk joins against the destination: left to itself the planner hashes the whole destination
# (or merge-joins from its first key) for every chunk; an index probe per chunk row is what ON
# CONFLICT does, so the join variants get the same.
PROBE_BY_INDEX: list[Statement] = [
    sql.SQL("SET LOCAL enable_hashjoin = off"),
    sql.SQL("SET LOCAL enable_mergejoin = off"),
]


def _on_conflict(
    plan: TransferPlan, columns: tuple[str, ...], select: sql.Composable, dest: sql.Composable
) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {dest} ({cols}) {ovr}{select} ON CONFLICT ({conf}) DO UPDATE SET {set}"
    ).format(
        dest=dest,
        cols=idents(columns),
        ovr=overriding(plan, columns),
        select=select,
        conf=idents(plan.conflict_columns),
        set=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _updates(plan, columns)
        ),
    )


class TempChunkWriter(ChunkWriter):
    """Each chunk COPYed into a temporary table dropped at commit; `statements` move it on."""

    strategy = "bench_temp"
    keeps_checkpoint = False
    temp_buffers: str | None = None

    def target(self) -> sql.Composable:
        return CHUNK

    def before_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        if self.temp_buffers:  # allowed until the session's first temporary table, then a no-op
            cur.execute(sql.SQL("SET temp_buffers = {}").format(sql.Literal(self.temp_buffers)))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                CHUNK, idents(columns), self.dest
            )
        )

    def after_copy(self, cur: psycopg.Cursor[Any], columns: tuple[str, ...]) -> None:
        for statement in self.statements(columns):
            cur.execute(statement)

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        raise NotImplementedError


class TodayOnConflict(TempChunkWriter):
    """(a) The writer as it was: DISTINCT ON the conflict columns, INSERT ... ON CONFLICT DO UPDATE."""

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        return [_on_conflict(self.plan, columns, _last_per_conflict(self.plan, columns, CHUNK), self.dest)]


class MergeChunk(TempChunkWriter):
    """(b) MERGE (PostgreSQL 15) from the deduplicated chunk."""

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        return [
            *PROBE_BY_INDEX,
            sql.SQL(
                "MERGE INTO {dest} AS d USING ({src}) AS s ON {match} WHEN MATCHED THEN UPDATE SET {set} "
                "WHEN NOT MATCHED THEN INSERT ({cols}) {ovr}VALUES ({vals})"
            ).format(
                dest=self.dest,
                src=_last_per_conflict(self.plan, columns, CHUNK),
                match=_match(self.plan, "d", "s"),
                set=sql.SQL(", ").join(
                    sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in _updates(self.plan, columns)
                ),
                cols=idents(columns),
                ovr=overriding(self.plan, columns),
                vals=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns),
            ),
        ]


class NoDistinct(TempChunkWriter):
    """(d1) The key is unique in a chunk: when it is the conflict key, INSERT ... ON CONFLICT straight
    from the chunk, no sort."""

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        select = sql.SQL("SELECT {} FROM {}").format(idents(columns), CHUNK)
        return [_on_conflict(self.plan, columns, select, self.dest)]


class NoDistinctTempBuffers(NoDistinct):
    """(d2) d1 with temp_buffers large enough that the chunk never leaves memory."""

    temp_buffers = "256MB"


class UpdateThenInsert(TempChunkWriter):
    """(d3) UPDATE ... FROM the chunk for existing keys, INSERT ... WHERE NOT EXISTS for new ones.
    Like MERGE, a concurrent insert of the same key makes the INSERT fail (unique violation)."""

    def guard(self, columns: tuple[str, ...]) -> sql.Composable:
        return sql.SQL("")

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        dest = self.dest
        return [
            *PROBE_BY_INDEX,
            sql.SQL("UPDATE {dest} AS d SET {set} FROM {chunk} AS s WHERE {match}").format(
                dest=dest,
                set=_set_from(self.plan, columns, "s"),
                chunk=CHUNK,
                match=_match(self.plan, "d", "s"),
            ),
            sql.SQL(
                "INSERT INTO {dest} ({cols}) {ovr}SELECT {cols} FROM {chunk} AS s "
                "WHERE NOT EXISTS (SELECT FROM {dest} AS d WHERE {match}){guard}"
            ).format(
                dest=dest,
                cols=idents(columns),
                ovr=overriding(self.plan, columns),
                chunk=CHUNK,
                match=_match(self.plan, "d", "s"),
                guard=self.guard(columns),
            ),
        ]


class UpdateThenInsertGuarded(UpdateThenInsert):
    """(d3s) d3 whose INSERT keeps ON CONFLICT DO UPDATE for keys inserted concurrently: safe."""

    def guard(self, columns: tuple[str, ...]) -> sql.Composable:
        return sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
            idents(self.plan.conflict_columns),
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _updates(self.plan, columns)
            ),
        )


class DeleteThenInsert(TempChunkWriter):
    """(d5) DELETE the chunk's keys, then a plain INSERT of the chunk. Not an upsert: columns the
    transfer does not copy fall back to their defaults, inbound foreign keys cascade or fail, DELETE and
    INSERT triggers fire instead of UPDATE ones, a concurrent UPDATE of such a row finds it deleted,
    and a concurrent insert of a new key makes the INSERT fail. Measured to show what UPDATE costs."""

    def statements(self, columns: tuple[str, ...]) -> list[Statement]:
        return [
            *PROBE_BY_INDEX,
            sql.SQL("DELETE FROM {dest} AS d USING {chunk} AS s WHERE {match}").format(
                dest=self.dest, chunk=CHUNK, match=_match(self.plan, "d", "s")
            ),
            sql.SQL("INSERT INTO {dest} ({cols}) {ovr}SELECT {cols} FROM {chunk}").format(
                dest=self.dest, cols=idents(columns), ovr=overriding(self.plan, columns), chunk=CHUNK
            ),
        ]


class StagedOnConflict(StagedWriter):
    """(c) Every chunk into one UNLOGGED stage (staged.py's), then one INSERT ... ON CONFLICT from it
    in the final transaction, after the stage was counted against the checkpoints."""

    strategy = "bench_staged"
    distinct = True

    def finalize(self, conn: Conn, staged_rows: int) -> None:
        columns = tuple(c.name for c in self.plan.dest_columns)
        found = row_count(conn, self.stage)
        if found != staged_rows:
            raise StagingLostError(f"stage holds {found} rows, checkpoints say {staged_rows}")
        select = (
            _last_per_conflict(self.plan, columns, self.stage)
            if self.distinct
            else sql.SQL("SELECT {} FROM {}").format(idents(columns), self.stage)
        )
        conn.execute(_on_conflict(self.plan, columns, select, self.dest))
        conn.execute(sql.SQL("DROP TABLE {}").format(self.stage))


class StagedNoDistinct(StagedOnConflict):
    """(c2) c without the sort: the key is unique across the stage when it is the conflict key."""

    distinct = False


# -- methods -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    writer: type[ChunkWriter] | None = None  # None: the writer strategies.writer_for picks
    big_chunks: bool = False  # run with --big-chunk-rows instead of --chunk-rows
    parallelism: int = 1
    pipe: bool = False


METHODS = (
    Method("pipe", "psql binary COPY pipe into the empty table (the bound)", pipe=True),
    Method(
        "a_on_conflict", "(a) per-chunk temp table + DISTINCT ON + INSERT ... ON CONFLICT", TodayOnConflict
    ),
    Method("b_merge", "(b) per-chunk temp table + MERGE (unsafe vs concurrent inserts)", MergeChunk),
    Method("c_staged", "(c) UNLOGGED stage of all chunks + one DISTINCT ON + ON CONFLICT", StagedOnConflict),
    Method(
        "c2_staged_nodistinct",
        "(c2) UNLOGGED stage of all chunks + one ON CONFLICT, no sort",
        StagedNoDistinct,
    ),
    Method("d1_nodistinct", "(d1) per-chunk temp table + ON CONFLICT, no DISTINCT ON", NoDistinct),
    Method("d2_nodistinct_tempbuf", "(d2) d1 + temp_buffers=256MB", NoDistinctTempBuffers),
    Method(
        "d3_update_insert", "(d3) per-chunk UPDATE FROM + INSERT WHERE NOT EXISTS (unsafe)", UpdateThenInsert
    ),
    Method(
        "d3s_update_insert_guarded",
        "(d3s) d3 with ON CONFLICT DO UPDATE on the INSERT (safe)",
        UpdateThenInsertGuarded,
    ),
    Method("d4_a_big_chunks", "(d4) (a) with --big-chunk-rows", TodayOnConflict, big_chunks=True),
    Method(
        "d5_delete_insert",
        "(d5) per-chunk DELETE + plain INSERT (not an upsert: see class)",
        DeleteThenInsert,
    ),
    Method("chosen", "etl_platform.transfer.upsert as committed (strategies.writer_for)"),
    Method("chosen_big_chunks", "chosen with --big-chunk-rows", big_chunks=True),
    Method("chosen_parallel2", "chosen with parallelism=2 (two key ranges, two connections)", parallelism=2),
)


@dataclass
class Options:
    base_url: str
    src_url: str
    dst_url: str
    rows: int
    rounds: int
    chunk_rows: int
    big_chunk_rows: int
    methods: list[Method]
    regenerate: bool
    results_dir: Path


@dataclass
class Expect:
    rows: int
    amount: str
    customers: int


@dataclass
class Run:
    method: str
    round: int
    seconds: float
    cpu_seconds: float | None
    wal_bytes: int
    detail: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> Options:
    names = [m.name for m in METHODS]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=db.DEFAULT_URL, help="server URL (database part ignored)")
    parser.add_argument("--src-db", default="bench_src")
    parser.add_argument("--dst-db", default="bench_dst")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="the engine's default chunk")
    parser.add_argument("--big-chunk-rows", type=int, default=500_000)
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {','.join(names)} (pipe always runs)"
    )
    parser.add_argument("--regenerate", action="store_true", help="regenerate the source and template tables")
    parser.add_argument("--results-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    ns = parser.parse_args(argv)
    wanted = [n for n in ns.only.split(",") if n] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {names}")
    methods = [m for m in METHODS if m.name in wanted and not m.pipe]
    return Options(
        base_url=ns.url,
        src_url=db.db_url(ns.url, ns.src_db),
        dst_url=db.db_url(ns.url, ns.dst_db),
        rows=ns.rows,
        rounds=ns.rounds,
        chunk_rows=ns.chunk_rows,
        big_chunk_rows=ns.big_chunk_rows,
        methods=methods,
        regenerate=ns.regenerate,
        results_dir=ns.results_dir,
    )


# -- data --------------------------------------------------------------------------------------------


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


def ensure_generated(url: str, table: str, rows: int, regenerate: bool) -> None:
    """datagen's orders at `rows` rows in upsert_alt.<table>, regenerated only when its comment (a
    fingerprint of the generator and the row count) differs; then frozen and analysed."""
    text = f"{LAYOUT_VERSION}|{datagen.ORDERS_DDL}|{datagen.ORDERS_FILL}|{rows}"
    fingerprint = f"{LAYOUT_VERSION} rows={rows} sha={hashlib.sha256(text.encode()).hexdigest()[:12]}"
    with db.connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        found = conn.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (_ident(table).as_string(conn),)
        ).fetchone()
        if regenerate or found is None or found[0] != fingerprint:
            say(f"generating {SCHEMA}.{table} ({rows:,} rows) in {url.rsplit('/', 1)[-1]}")
            datagen.create_orders(conn, table=table, schema=SCHEMA, rows=rows)
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(_ident(table), sql.Literal(fingerprint)))
            conn.commit()
    with db.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(_ident(table)))
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(table)))  # warm the page cache


def expected(opts: Options) -> Expect:
    with db.connect(opts.src_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*), sum(amount)::text, sum(customer_id) FROM {}").format(
                _ident(f"orders_{opts.rows}")
            )
        ).fetchone()
    assert row is not None
    return Expect(int(row[0]), str(row[1]), int(row[2]))


def reset_destination(opts: Options, *, prefill: bool) -> None:
    """Drops every table of the schema but the prior_* templates (stages, checkpoints, the last
    destination), then builds the destination: the template's even keys with other values (status
    'stale', another customer) when `prefill`, primary key and index, frozen, analysed, checkpointed."""
    dest, prior = _ident(DEST_TABLE), _ident(f"prior_{opts.rows}")
    cols = idents(datagen.ORDERS_COLUMNS)
    with db.connect(opts.dst_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'prior\\_%%'",
            (SCHEMA,),
        ).fetchall()
        for (name,) in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(_ident(name)))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(dest, prior))
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(dest))
        if prefill:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {dest} ({cols}) SELECT id, 1 + (customer_id * 31) % 50000, order_ts, {stale}, "
                    "amount + 1, quantity + 1, discount, channel, country, 'prior ' || id FROM {prior} "
                    "WHERE id % 2 = 0"
                ).format(dest=dest, cols=cols, stale=sql.Literal(STALE), prior=prior)
            )
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(dest))
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(dest, sql.Identifier(SECONDARY_INDEX)))
        conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(dest))
        conn.execute("CHECKPOINT")


def check_result(opts: Options, want: Expect) -> None:
    with db.connect(opts.dst_url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), sum(amount)::text, sum(customer_id), count(*) FILTER (WHERE status = {}) FROM {}"
            ).format(sql.Literal(STALE), _ident(DEST_TABLE))
        ).fetchone()
    assert row is not None
    got = Expect(int(row[0]), str(row[1]), int(row[2]))
    if got != want or row[3]:
        raise AssertionError(f"destination is not the source's rows: {got}, {row[3]} stale rows; want {want}")


def wal_lsn(opts: Options) -> str:
    with db.connect(opts.dst_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wal_since(opts: Options, lsn: str) -> int:
    with db.connect(opts.dst_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (lsn,)
        ).fetchone()
    assert row is not None
    return int(row[0])


# -- running -----------------------------------------------------------------------------------------


@contextmanager
def given_writer(writer: type[ChunkWriter] | None) -> Iterator[None]:
    """The engine picks `writer` instead of strategies.writer_for's choice (None: no change)."""
    if writer is None:
        yield
        return

    def pick(plan: TransferPlan, checkpoint_schema: str, transfer_id: str, *_: Any) -> ChunkWriter:
        return writer(plan, checkpoint_schema, transfer_id)

    with mock.patch.object(engine_module, "writer_for", pick):
        yield


def run_pipe_method(opts: Options) -> dict[str, Any]:
    src, src_env = _psql_target(opts.src_url)
    dst, dst_env = _psql_target(opts.dst_url)
    base = ["psql", "-X", "-v", "ON_ERROR_STOP=1"]
    source = _ident(f"orders_{opts.rows}").as_string()
    dest = _ident(DEST_TABLE).as_string()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_pipe(
            [*base, "-d", src, "-c", f"\\copy {source} TO STDOUT (FORMAT binary)"],
            src_env,
            [*base, "-d", dst, "-c", f"\\copy {dest} FROM STDIN (FORMAT binary)"],
            dst_env,
            {"started_path": str(Path(tmp) / "started")},
        )
    if result["rows_reported"] != opts.rows:
        raise AssertionError(f"pipe copied {result['rows_reported']} rows, not {opts.rows}")
    return {"seconds": result["seconds"]}


def run_engine_method(opts: Options, method: Method) -> dict[str, Any]:
    spec = TransferSpec(
        source_table=f"{SCHEMA}.orders_{opts.rows}",
        destination_table=f"{SCHEMA}.{DEST_TABLE}",
        write_mode="upsert",
        chunk_rows=opts.big_chunk_rows if method.big_chunks else opts.chunk_rows,
        checkpoint_schema=SCHEMA,
        parallelism=method.parallelism,
    )
    with given_writer(method.writer):
        started = time.perf_counter()
        summary = engine_module.run_transfer(spec, opts.src_url, opts.dst_url)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "strategy": summary.strategy, "chunks": summary.chunks, "rows": summary.rows}


class BackendCpu:
    """CPU seconds of the destination database's backends serving this benchmark's timed sessions
    (application_name APP_NAME, set through PGAPPNAME for the engine and for psql), read from
    /proc while they run: the work the destination did, less sensitive than wall time to other
    sessions sharing the server's two cores. None when the server's /proc is not readable here."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.ticks: dict[int, int] = {}
        self.readable = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float | None:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK") if self.readable and self.ticks else None

    def _poll(self) -> None:
        dbname = self.opts.dst_url.rsplit("/", 1)[-1]
        with db.connect(self.opts.dst_url, autocommit=True) as conn:
            while not self._stop.is_set():
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    (dbname, APP_NAME),
                ).fetchall()
                for (pid,) in pids:
                    try:
                        with open(f"/proc/{pid}/stat") as fh:
                            fields = fh.read().rsplit(")", 1)[1].split()
                    except FileNotFoundError:
                        continue  # ended between the query and the read
                    except OSError:
                        self.readable = False
                        return
                    self.ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
                self._stop.wait(0.05)


def run_one(opts: Options, method: Method, round_no: int, want: Expect) -> Run:
    reset_destination(opts, prefill=not method.pipe)
    lsn = wal_lsn(opts)
    with BackendCpu(opts) as cpu:
        detail = run_pipe_method(opts) if method.pipe else run_engine_method(opts, method)
    wal = wal_since(opts, lsn)
    if not method.pipe:
        check_result(opts, want)
    seconds = float(detail.pop("seconds"))
    cpu_text = "n/a" if cpu.seconds is None else f"{cpu.seconds:6.2f} s"
    say(
        f"  round {round_no} {method.name:<28} {seconds:8.2f} s  destination CPU {cpu_text}  "
        f"WAL {wal / 2**20:6.0f} MiB  {detail or ''}"
    )
    return Run(method.name, round_no, seconds, cpu.seconds, wal, detail)


def _median(values: list[float | None], digits: int) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None


def summarize(opts: Options, runs: list[Run]) -> list[dict[str, Any]]:
    """Per method: medians of its seconds and of its ratios to the pipe run just before it."""
    rows = []
    for method in [m for m in METHODS if m.pipe] + opts.methods:
        mine = [x for x in runs if x.method == method.name]
        pairs = [(runs[runs.index(x) - 1], x) for x in mine] if not method.pipe else [(x, x) for x in mine]
        ratios = [pipe.seconds / x.seconds for pipe, x in pairs]
        cpu_ratios = [
            pipe.cpu_seconds / x.cpu_seconds if pipe.cpu_seconds and x.cpu_seconds else None
            for pipe, x in pairs
        ]
        rows.append(
            {
                "method": method.name,
                "label": method.label,
                "runs": len(mine),
                "median_seconds": _median([x.seconds for x in mine], 2),
                "median_ratio_to_pipe": _median(list(ratios), 3),
                "median_destination_cpu_seconds": _median([x.cpu_seconds for x in mine], 2),
                "median_cpu_ratio_to_pipe": _median(cpu_ratios, 3),
                "median_wal_mib": round(statistics.median(x.wal_bytes for x in mine) / 2**20),
                "seconds": [round(x.seconds, 2) for x in mine],
                "ratios": [round(r, 3) for r in ratios],
            }
        )
    return rows


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ["PGAPPNAME"] = APP_NAME  # the engine's and psql's sessions; db.connect names its own
    for dbname in (opts.src_url, opts.dst_url):
        db.ensure_database(opts.base_url, dbname.rsplit("/", 1)[-1])
    ensure_generated(opts.src_url, f"orders_{opts.rows}", opts.rows, opts.regenerate)
    ensure_generated(opts.dst_url, f"prior_{opts.rows}", opts.rows, opts.regenerate)
    want = expected(opts)
    pipe = next(m for m in METHODS if m.pipe)
    runs: list[Run] = []
    for round_no in range(1, opts.rounds + 1):
        shift = (round_no - 1) % max(len(opts.methods), 1)
        order = opts.methods[shift:] + opts.methods[:shift]
        say(f"round {round_no}/{opts.rounds}: each of {', '.join(m.name for m in order)} after a pipe run")
        for method in order:
            for run in (pipe, method):
                runs.append(run_one(opts, run, round_no, want))
    table = summarize(opts, runs)
    say(
        f"\n{opts.rows:,} rows (half already in the destination), {opts.rounds} rounds, chunk_rows "
        f"{opts.chunk_rows:,} (big: {opts.big_chunk_rows:,}); ratio = seconds of the pipe run just before / "
        "method seconds; CPU = the destination backends' CPU seconds; medians"
    )
    say(f"{'method':<28} {'seconds':>8} {'ratio':>6} {'CPU s':>7} {'CPU ratio':>9} {'WAL MiB':>8}  ratios")
    for row in table:
        cpu, cpu_ratio = row["median_destination_cpu_seconds"], row["median_cpu_ratio_to_pipe"]
        say(
            f"{row['method']:<28} {row['median_seconds']:8.2f} {row['median_ratio_to_pipe']:6.3f} "
            f"{'n/a' if cpu is None else f'{cpu:.2f}':>7} {'n/a' if cpu_ratio is None else f'{cpu_ratio:.3f}':>9} "
            f"{row['median_wal_mib']:8d}  {row['ratios'] if row['method'] != 'pipe' else '(the bound)'}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    opts.results_dir.mkdir(parents=True, exist_ok=True)
    path = opts.results_dir / f"upsert-alternatives-{stamp}.json"
    doc = {
        "timestamp": stamp,
        "rows": opts.rows,
        "rounds": opts.rounds,
        "chunk_rows": opts.chunk_rows,
        "big_chunk_rows": opts.big_chunk_rows,
        "server": db.server_info(opts.base_url),
        "summary": table,
        "runs": [x.__dict__ for x in runs],
    }
    path.write_text(json.dumps(doc, indent=2, default=str))
    say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

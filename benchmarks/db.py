"""Database set-up for the transfer benchmark: databases, tables, resets and row counts.

The source database holds the generated `orders` table (benchmarks.datagen) and an empty copy of
its shape for the empty-task baseline; the destination database holds one table per destination
shape. Every statement composes identifiers with psycopg.sql.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from benchmarks import datagen

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432"
SCHEMA = "public"
SOURCE_TABLE = "orders"
EMPTY_SOURCE_TABLE = "orders_empty"
DEST_TABLE = "orders"
TRANSFORM_DEST_TABLE = "orders_transformed"
TRANSFORM_EXTRA_COLUMN = ("processed_at", "timestamp with time zone")
CHECKPOINT_SCHEMA = "etl_platform"
BENCH_DAG_ID = "etl_bench"

Conn = psycopg.Connection[Any]


def db_url(base_url: str, dbname: str) -> str:
    """`base_url` with its database replaced by `dbname` (user, host, port and query kept)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def connect(url: str, *, autocommit: bool = False) -> Conn:
    """A psycopg 3 connection tagged so the benchmark's own sessions are recognisable."""
    return psycopg.connect(url, autocommit=autocommit, application_name="etl-bench-control")


def ensure_database(base_url: str, dbname: str) -> bool:
    """Creates `dbname` if missing; True when it was created."""
    with connect(db_url(base_url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def table_columns(conn: Conn, table: str, schema: str = SCHEMA) -> list[tuple[str, str]]:
    """(name, format_type) of each live column, in order; empty when the table does not exist."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()
    conn.commit()
    return [(r[0], r[1]) for r in rows]


def count_rows(conn: Conn, table: str, schema: str = SCHEMA, where: sql.Composable | None = None) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    if where is not None:
        query = sql.SQL("{} WHERE {}").format(query, where)
    row = conn.execute(query).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def expected_orders_columns(base_url: str) -> list[tuple[str, str]]:
    """The column shape datagen creates, read back from a throw-away temporary table."""
    with connect(db_url(base_url, "postgres")) as conn:
        conn.execute(
            sql.SQL(datagen.ORDERS_DDL.replace("CREATE TABLE", "CREATE TEMP TABLE", 1)).format(  # type: ignore[arg-type]
                table=sql.Identifier("bench_shape_probe")
            )
        )
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = 'bench_shape_probe'::regclass AND a.attnum > 0 ORDER BY a.attnum"
        ).fetchall()
        conn.rollback()
    return [(r[0], r[1]) for r in rows]


@dataclass
class SourceState:
    rows: int
    regenerated: bool
    generate_seconds: float
    non_null_customer_rows: int


def prepare_source(url: str, rows: int, shape: list[tuple[str, str]], *, regenerate: bool) -> SourceState:
    """Makes `orders` hold exactly `rows` generated rows (regenerating only when needed), vacuums and
    warms it.

    The VACUUM sets hint bits and the visibility map up front, so the first method timed does not
    pay for them and autovacuum has nothing left to do on the source during the runs.
    """
    regenerated = False
    seconds = 0.0
    with connect(url) as conn:
        current = table_columns(conn, SOURCE_TABLE)
        have = count_rows(conn, SOURCE_TABLE) if current == shape else -1
        if regenerate or have != rows:
            started = time.perf_counter()
            datagen.create_orders(conn, table=SOURCE_TABLE, schema=SCHEMA, rows=rows)
            seconds = time.perf_counter() - started
            regenerated = True
        if table_columns(conn, EMPTY_SOURCE_TABLE) != shape or count_rows(conn, EMPTY_SOURCE_TABLE):
            datagen.create_empty_like_orders(conn, EMPTY_SOURCE_TABLE, schema=SCHEMA)
    with connect(url, autocommit=True) as conn:
        for table in (SOURCE_TABLE, EMPTY_SOURCE_TABLE):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(SCHEMA, table)))
        # Warm the OS page cache with the heap and the key index, so the first method timed does
        # not read cold pages the later ones find cached.
        ident, key = sql.Identifier(SCHEMA, SOURCE_TABLE), sql.Identifier("id")
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident))
        conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT {} FROM {} ORDER BY {}) AS k").format(key, ident, key)
        )
    with connect(url) as conn:
        total = count_rows(conn, SOURCE_TABLE)
        non_null = count_rows(
            conn, SOURCE_TABLE, where=sql.SQL("{} IS NOT NULL").format(sql.Identifier("customer_id"))
        )
    return SourceState(total, regenerated, round(seconds, 1), non_null)


def prepare_destination(url: str, shape: list[tuple[str, str]]) -> None:
    """Creates the destination tables when missing or differently shaped; forgets old bench checkpoints.

    Autovacuum is switched off on these scratch tables so a vacuum of the previous method's
    rows never overlaps the next method's timing (each method starts from TRUNCATE anyway).
    """
    with connect(url) as conn:
        if table_columns(conn, DEST_TABLE) != shape:
            datagen.create_empty_like_orders(conn, DEST_TABLE, schema=SCHEMA)
        if table_columns(conn, TRANSFORM_DEST_TABLE) != [*shape, TRANSFORM_EXTRA_COLUMN]:
            datagen.create_empty_like_orders(conn, TRANSFORM_DEST_TABLE, schema=SCHEMA)
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} timestamptz").format(
                    sql.Identifier(SCHEMA, TRANSFORM_DEST_TABLE), sql.Identifier(TRANSFORM_EXTRA_COLUMN[0])
                )
            )
        for table in (DEST_TABLE, TRANSFORM_DEST_TABLE):
            conn.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
                    sql.Identifier(SCHEMA, table)
                )
            )
        checkpoints = sql.Identifier(CHECKPOINT_SCHEMA, "transfer_checkpoints")
        exists = conn.execute("SELECT to_regclass(%s)", (checkpoints.as_string(conn),)).fetchone()
        if exists and exists[0] is not None:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE transfer_id LIKE %s").format(checkpoints),
                (BENCH_DAG_ID + "/%",),
            )
        conn.commit()


def reset_destination(url: str, table: str) -> None:
    """TRUNCATE the method's destination table and CHECKPOINT the destination server."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(SCHEMA, table)))
        conn.execute("CHECKPOINT")


def terminate_leftover_sessions(
    base_url: str, dbnames: list[str], app_names: list[str], wait_seconds: float = 30.0
) -> int:
    """Ends the sessions a killed (capped) child left in the benchmark databases; returns how many.

    Only sessions whose application_name is one of `app_names` (the child's PGAPPNAME, or the
    operator's own name) are touched. A server backend notices its client is gone only when it
    next talks to it, so a long OFFSET scan would otherwise keep burning CPU into the next method.
    """
    ended = 0
    deadline = time.monotonic() + wait_seconds
    with connect(db_url(base_url, "postgres"), autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND application_name = ANY(%s) "
                "AND pid <> pg_backend_pid()",
                (dbnames, app_names),
            ).fetchall()
            if not rows or time.monotonic() > deadline:
                return ended
            for (pid,) in rows:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                ended += 1
            time.sleep(0.5)


class ForeignSessionWatcher:
    """Notes sessions in the benchmark databases that are not the benchmark's own.

    Another process writing to (or truncating) a destination table mid-run corrupts that method's
    row count and timing; this makes such interference visible instead of silent.
    """

    def __init__(self, base_url: str, dbnames: list[str]):
        self.conn = connect(db_url(base_url, "postgres"), autocommit=True)
        self.dbnames = dbnames
        self.ours: list[str] = ["etl-bench-control"]
        self.seen: dict[int, dict[str, Any]] = {}

    def start(self, our_app_names: list[str]) -> None:
        """Begins a window in which sessions named `our_app_names` are expected."""
        self.ours = ["etl-bench-control", *our_app_names]
        self.seen = {}

    def __call__(self) -> None:
        rows = self.conn.execute(
            "SELECT pid, datname, application_name, state, left(query, 120), backend_start "
            "FROM pg_stat_activity WHERE datname = ANY(%s) AND application_name <> ALL(%s) "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (self.dbnames, self.ours),
        ).fetchall()
        for pid, datname, app, state, query, started in rows:
            entry = self.seen.setdefault(
                pid, {"pid": pid, "database": datname, "application_name": app, "since": str(started)}
            )
            if state == "active" and query:
                entry["last_active_query"] = query

    def take(self) -> list[dict[str, Any]]:
        return list(self.seen.values())

    def close(self) -> None:
        self.conn.close()


def server_info(base_url: str) -> dict[str, Any]:
    """Server version and the settings that shape load speed, for the results file."""
    names = ["shared_buffers", "max_wal_size", "synchronous_commit", "fsync", "wal_level", "work_mem"]
    with connect(db_url(base_url, "postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)", (names,)
            ).fetchall()
        )
    return {"server_version": version[0] if version else None, "settings": settings}

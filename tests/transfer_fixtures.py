"""Tables with awkward types and names shared by the transfer tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
from psycopg import sql

# Every type and name the issue asks to round-trip, in an order the destination does not share.
AWKWARD_DDL = """
CREATE TABLE {table} (
    id          bigint PRIMARY KEY,
    "select"    text,
    "MixedCase" integer,
    amount      numeric(30,10),
    ratio       double precision,
    ts          timestamptz,
    day         date,
    doc         jsonb,
    tags        text[],
    nums        integer[],
    blob        bytea,
    uid         uuid,
    flag        boolean,
    updated_at  timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'
)
"""
# The same columns, another order (and "MixedCase" widened to bigint when `widen` is set).
AWKWARD_DEST_DDL = """
CREATE TABLE {table} (
    flag        boolean,
    uid         uuid,
    blob        bytea,
    nums        integer[],
    tags        text[],
    doc         jsonb,
    day         date,
    ts          timestamptz,
    ratio       double precision,
    amount      numeric(30,10),
    "MixedCase" {mixed_type},
    "select"    text,
    id          bigint PRIMARY KEY,
    updated_at  timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'
)
"""

AWKWARD_FILL = """
INSERT INTO {table} (id, "select", "MixedCase", amount, ratio, ts, day, doc, tags, nums, blob, uid, flag)
SELECT g,
       CASE g %% 7
           WHEN 0 THEN NULL
           WHEN 1 THEN E'tab\\there'
           WHEN 2 THEN E'new\\nline and \\r return'
           WHEN 3 THEN E'back\\\\slash \\\\N not null'
           WHEN 4 THEN 'ünïcødé ✓ 日本語 "quoted", comma'
           WHEN 5 THEN ''
           ELSE 'plain ' || g
       END,
       CASE WHEN g %% 5 = 0 THEN NULL ELSE g * 3 END,
       CASE WHEN g %% 6 = 0 THEN NULL ELSE (g::numeric * 1234567.0123456789) / 7 END,
       CASE WHEN g %% 9 = 0 THEN NULL ELSE g / 3.0::float8 END,
       CASE WHEN g %% 8 = 0 THEN NULL ELSE '2026-03-01T12:34:56.789012+02'::timestamptz + g * interval '37 minutes' END,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE date '2026-01-01' + (g %% 400) END,
       CASE WHEN g %% 4 = 0 THEN NULL ELSE jsonb_build_object('k', g, 's', E'x\\ty', 'a', jsonb_build_array(1, 'two', NULL)) END,
       CASE WHEN g %% 3 = 0 THEN NULL ELSE ARRAY['a,b', E'c"d', NULL, E'e\\\\f'] END,
       ARRAY[g, NULL, -g],
       CASE WHEN g %% 2 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') || '\\x00ff'::bytea END,
       CASE WHEN g %% 11 = 0 THEN NULL ELSE md5(g::text)::uuid END,
       CASE g %% 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END
FROM generate_series(1, %(rows)s) AS g
"""

AWKWARD_COLUMNS = (
    "id",
    "select",
    "MixedCase",
    "amount",
    "ratio",
    "ts",
    "day",
    "doc",
    "tags",
    "nums",
    "blob",
    "uid",
    "flag",
    "updated_at",
)


def create_awkward_source(conn: psycopg.Connection[Any], schema: str, table: str, rows: int) -> None:
    ident = sql.Identifier(schema, table)
    conn.execute(sql.SQL(AWKWARD_DDL).format(table=ident))  # type: ignore[arg-type]
    conn.execute(sql.SQL(AWKWARD_FILL).format(table=ident), {"rows": rows})  # type: ignore[arg-type]
    conn.execute(sql.SQL("ANALYZE {}").format(ident))


def create_awkward_destination(
    conn: psycopg.Connection[Any], schema: str, table: str, mixed_type: str = "integer"
) -> None:
    ddl = sql.SQL(AWKWARD_DEST_DDL).format(  # type: ignore[arg-type]
        table=sql.Identifier(schema, table),
        mixed_type=sql.SQL(mixed_type),  # type: ignore[arg-type]
    )
    conn.execute(ddl)


def table_digest(
    conn: psycopg.Connection[Any], schema: str, table: str, columns: tuple[str, ...], where: str = "TRUE"
) -> str:
    """An md5 over every row's text form, columns in a fixed order: equal digests mean equal tables.

    `where` is a test's own constant SQL predicate (a time window), never user input."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r.id)), '') "
            "FROM (SELECT {} FROM {} WHERE {}) AS r"
        ).format(cols, sql.Identifier(schema, table), sql.SQL(where))  # type: ignore[arg-type]
    ).fetchone()
    assert row is not None
    return str(row[0])


def row_count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
    assert row is not None
    return int(row[0])


# run_transfer in a child process: a worker the crash tests can SIGKILL mid-transfer.
_TRANSFER_CHILD = """
import json, sys
from etl_platform.transfer import TransferSpec, run_transfer
args = json.loads(sys.argv[1])
summary = run_transfer(TransferSpec(**args["spec"]), args["src"], args["dst"])
print(json.dumps(summary.as_dict()))
"""


def start_transfer_process(src: str, dst: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """`run_transfer(TransferSpec(**spec), src, dst)` in a child process; on success the last line
    of its stdout is the summary as JSON."""
    return subprocess.Popen(
        [sys.executable, "-c", _TRANSFER_CHILD, json.dumps({"src": src, "dst": dst, "spec": spec})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )

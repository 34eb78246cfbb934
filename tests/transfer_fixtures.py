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
# The least a StreamingTransferOperator needs to be built at parse time (nothing is connected to).
MINIMAL_TRANSFER: dict[str, Any] = {
    "source_conn_id": "s",
    "destination_conn_id": "d",
    "source_table": "a.b",
    "destination_table": "c.d",
}

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
    doc_json    json,
    exact       numeric,
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
    exact       numeric,
    doc_json    json,
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
INSERT INTO {table} (id, "select", "MixedCase", amount, ratio, ts, day, doc, doc_json, exact, tags, nums, blob, uid, flag)
SELECT g,
       CASE g %% 8
           WHEN 0 THEN NULL
           WHEN 1 THEN E'tab\\there'
           WHEN 2 THEN E'new\\nline and \\r return'
           WHEN 3 THEN E'back\\\\slash \\\\N not null'
           WHEN 4 THEN 'ünïcødé ✓ 日本語 "quoted", comma'
           WHEN 5 THEN ''
           WHEN 6 THEN 'it''s O''Brien''s C:\\dir\\ ''quoted'' \\N \\\\ trailing\\'
           ELSE 'plain ' || g
       END,
       CASE WHEN g %% 5 = 0 THEN NULL ELSE g * 3 END,
       CASE WHEN g %% 6 = 0 THEN NULL WHEN g %% 13 = 1 THEN 'NaN' ELSE (g::numeric * 1234567.0123456789) / 7 END,
       CASE WHEN g %% 9 = 0 THEN NULL
            WHEN g %% 13 = 2 THEN 'NaN' WHEN g %% 13 = 3 THEN 'Infinity' WHEN g %% 13 = 4 THEN '-Infinity'
            WHEN g %% 13 = 5 THEN '-0' WHEN g %% 13 = 6 THEN '4.9406564584124654e-324'
            ELSE g / 3.0::float8 END,
       CASE WHEN g %% 8 = 0 THEN NULL
            WHEN g %% 17 = 1 THEN 'infinity' WHEN g %% 17 = 2 THEN '-infinity'
            WHEN g %% 17 = 3 THEN '4713-01-01 00:00:00+00 BC'::timestamptz + g * interval '1 second'
            WHEN g %% 17 = 4 THEN '0044-03-15 12:34:56.789012+02 BC'::timestamptz + g * interval '37 minutes'
            ELSE '2026-03-01T12:34:56.789012+02'::timestamptz + g * interval '37 minutes' END,
       CASE WHEN g %% 10 = 0 THEN NULL
            WHEN g %% 19 = 1 THEN 'infinity' WHEN g %% 19 = 2 THEN '-infinity'
            WHEN g %% 19 = 3 THEN date '4713-01-01 BC' + (g %% 400)
            WHEN g %% 19 = 4 THEN date '0001-12-31 BC' - (g %% 400)
            ELSE date '2026-01-01' + (g %% 400) END,
       CASE WHEN g %% 4 = 0 THEN NULL ELSE jsonb_build_object('k', g, 's', E'x\\ty', 'a', jsonb_build_array(1, 'two', NULL)) END,
       -- json keeps its text as written ({{ }} are sql.SQL's escaped braces): spacing, key order, a duplicate key, escapes, 2.50 and 1e2
       CASE WHEN g %% 5 = 0 THEN NULL
            ELSE ('{{ "z" : ' || g || ',  "a":[1 , 2.50, 1e2],"z": "dup", "q": "it''s \\\\ \\"q\\" \\u00e9 \\u0000"}}')::json END,
       CASE g %% 11 WHEN 0 THEN NULL WHEN 1 THEN 'NaN' WHEN 2 THEN 'Infinity' WHEN 3 THEN '-Infinity'
            WHEN 4 THEN ('1e-' || (300 + g %% 50))::numeric WHEN 5 THEN ('9.' || repeat('9', 200))::numeric
            ELSE g::numeric / 7 END,
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
    "doc_json",
    "exact",
    "tags",
    "nums",
    "blob",
    "uid",
    "flag",
    "updated_at",
)


# The hostile values AWKWARD_FILL plants, each a predicate on the source row (SQL text form, so NaN,
# infinities, BC dates and -0 compare exactly): a test asserts each one is present, then compares them.
HOSTILE_PREDICATES = {
    "float NaN": "ratio::text = 'NaN'",
    "float +Infinity": "ratio::text = 'Infinity'",
    "float -Infinity": "ratio::text = '-Infinity'",
    "float -0": "ratio::text = '-0'",
    "float denormal": "ratio > 0 AND ratio < 1e-300",
    "numeric(30,10) NaN": "amount::text = 'NaN'",
    "numeric NaN": "exact::text = 'NaN'",
    "numeric +Infinity": "exact::text = 'Infinity'",
    "numeric -Infinity": "exact::text = '-Infinity'",
    "numeric 1e-300": "exact > 0 AND exact < 1e-299",
    "timestamptz infinity": "ts = 'infinity'",
    "timestamptz -infinity": "ts = '-infinity'",
    "timestamptz BC": "isfinite(ts) AND ts < '0001-01-01 00:00:00+00'",
    "date infinity": "day = 'infinity'",
    "date -infinity": "day = '-infinity'",
    "date BC": "isfinite(day) AND day < '0001-01-01'",
    "json beside jsonb": 'doc_json::text LIKE \'%"z": "dup"%\' AND doc IS NOT NULL',
    "text quotes and backslashes": "strpos(\"select\", '''') > 0 AND strpos(\"select\", '\\') > 0",
}


# What the transform path (CSV -> Arrow timestamp[us]/date32 -> CSV) cannot represent: infinities and
# years before 1. The transform tests null these out; the COPY paths carry them.
ARROW_UNREPRESENTABLE = (
    "timestamptz infinity",
    "timestamptz -infinity",
    "timestamptz BC",
    "date infinity",
    "date -infinity",
    "date BC",
)


def create_awkward_source(
    conn: psycopg.Connection[Any], schema: str, table: str, rows: int, *, arrow_safe: bool = False
) -> None:
    """The awkward table with its hostile values; `arrow_safe` sets ARROW_UNREPRESENTABLE ones to NULL."""
    ident = sql.Identifier(schema, table)
    conn.execute(sql.SQL(AWKWARD_DDL).format(table=ident))  # type: ignore[arg-type]
    conn.execute(sql.SQL(AWKWARD_FILL).format(table=ident), {"rows": rows})  # type: ignore[arg-type]
    if arrow_safe:
        for name in ARROW_UNREPRESENTABLE:
            column = "ts" if name.startswith("timestamptz") else "day"
            conn.execute(
                sql.SQL("UPDATE {} SET {} = NULL WHERE {}").format(
                    ident,
                    sql.Identifier(column),
                    sql.SQL(HOSTILE_PREDICATES[name]),  # type: ignore[arg-type]  # constants, never input
                )
            )
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


def hostile_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, list[tuple[Any, ...]]]:
    """Per hostile value: the (id, text form of every column) of each row carrying it, by id.

    Text forms because Python cannot hold most of these (dates past year 9999 or before year 1,
    NaN != NaN); each is the server's exact output, so equal lists mean equal values."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name, predicate in HOSTILE_PREDICATES.items():
        cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in AWKWARD_COLUMNS)
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id").format(
            cols,
            sql.Identifier(schema, table),
            sql.SQL(predicate),  # type: ignore[arg-type]  # the constants above, never input
        )
        found[name] = conn.execute(query).fetchall()
    return found

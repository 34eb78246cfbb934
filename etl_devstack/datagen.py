"""Generates the realistic `orders` dataset used by `make up`, the demo, the benchmarks and the tests.

Rows are generated inside PostgreSQL (generate_series), so a million rows take seconds and no
Python memory; the values are deterministic for a given row count and start date.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg import sql

ORDERS_COLUMNS = (
    "id", "customer_id", "order_ts", "status", "amount", "quantity", "discount", "channel", "country", "note",
)  # fmt: skip


def orders_arrow_schema() -> Any:
    """The orders columns as exact Arrow types (the Parquet files the benchmarks and tests load)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()), ("customer_id", pa.int32()), ("order_ts", pa.timestamp("us", tz="UTC")),
            ("status", pa.string()), ("amount", pa.decimal128(12, 2)), ("quantity", pa.int32()),
            ("discount", pa.decimal128(5, 2)), ("channel", pa.string()), ("country", pa.string()),
            ("note", pa.string()),
        ]
    )  # fmt: skip


ORDERS_DDL = """
CREATE TABLE {table} (
    id           bigint PRIMARY KEY,
    customer_id  integer NOT NULL,
    order_ts     timestamptz NOT NULL,
    status       text NOT NULL,
    amount       numeric(12,2) NOT NULL,
    quantity     integer NOT NULL,
    discount     numeric(5,2),
    channel      text NOT NULL,
    country      char(2) NOT NULL,
    note         text
)
"""

ORDERS_FILL = """
INSERT INTO {table}
SELECT g,
       1 + (g * 7919) %% 50000,
       %(start)s::timestamptz + (g::float8 / %(rows)s) * (%(days)s * interval '1 day'),
       (ARRAY['pending','paid','shipped','delivered','cancelled','returned'])[1 + g %% 6],
       round(((g * 104729) %% 100000)::numeric / 100 + 1, 2),
       1 + g %% 9,
       CASE WHEN g %% 4 = 0 THEN NULL ELSE ((g %% 30))::numeric(5,2) END,
       (ARRAY['web','mobile','store','partner'])[1 + g %% 4],
       (ARRAY['US','DE','FR','GB','JP','BR','IN','ES'])[1 + g %% 8],
       CASE WHEN g %% 10 = 0 THEN NULL ELSE 'order ' || g || ' for customer ' || (1 + (g * 7919) %% 50000) END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""


def create_orders(
    conn: psycopg.Connection[Any],
    table: str = "orders",
    schema: str = "public",
    rows: int = 1_000_000,
    start: date = date(2026, 1, 1),
    days: int = 180,
    batch: int = 500_000,
) -> None:
    """(Re)create schema.table with `rows` orders spread evenly over `days` days from `start`."""
    ident = sql.Identifier(schema, table)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cur.execute(sql.SQL(ORDERS_DDL).format(table=ident))  # type: ignore[arg-type]
        for first in range(1, rows + 1, batch):
            params = {
                "start": start,
                "rows": rows,
                "days": days,
                "first": first,
                "last": min(first + batch - 1, rows),
            }
            cur.execute(sql.SQL(ORDERS_FILL).format(table=ident), params)  # type: ignore[arg-type]
            conn.commit()
        cur.execute(sql.SQL("ANALYZE {}").format(ident))
    conn.commit()


def create_empty_like_orders(conn: psycopg.Connection[Any], table: str, schema: str = "public") -> None:
    ident = sql.Identifier(schema, table)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cur.execute(sql.SQL(ORDERS_DDL).format(table=ident))  # type: ignore[arg-type]
    conn.commit()

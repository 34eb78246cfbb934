"""The demo/test warehouse: the orders fact table (include/sql/warehouse) and the run ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.ledger.migrate import migrate

WAREHOUSE_SQL = Path(__file__).resolve().parents[1] / "include" / "sql" / "warehouse" / "orders_clean.sql"


def create_warehouse(conn: psycopg.Connection[Any], *, with_ledger: bool = False) -> None:
    """(Re)creates warehouse.orders_clean, empty, with its default partition."""
    conn.execute(sql.SQL(WAREHOUSE_SQL.read_text()))  # type: ignore[arg-type]  # our own file
    if with_ledger:
        migrate(conn)
    conn.commit()

"""The demo/test warehouse: the tables of include/sql/warehouse and the run ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.ledger.migrate import migrate

WAREHOUSE_SQL_DIR = Path(__file__).resolve().parents[1] / "include" / "sql" / "warehouse"
WAREHOUSE_SQL = WAREHOUSE_SQL_DIR / "orders_clean.sql"  # drops and recreates the fact table
# Idempotent DDL (CREATE ... IF NOT EXISTS): safe on a warehouse that already holds data.
IDEMPOTENT_SQL = tuple(path for path in sorted(WAREHOUSE_SQL_DIR.glob("*.sql")) if path != WAREHOUSE_SQL)
# Tables the idempotent files create, dropped by create_warehouse() (and recreated empty) so it always
# starts from nothing.
DERIVED_TABLES = ("warehouse.orders_daily", "warehouse.orders_oltp", "warehouse.orders_drop")


def _apply(conn: psycopg.Connection[Any], path: Path) -> None:
    conn.execute(sql.SQL(path.read_text()))  # type: ignore[arg-type]  # our own file


def create_warehouse(conn: psycopg.Connection[Any], *, with_ledger: bool = False) -> None:
    """(Re)creates warehouse.orders_clean (with its default partition) and orders_daily, both empty."""
    for table in DERIVED_TABLES:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*table.split("."))))
    _apply(conn, WAREHOUSE_SQL)
    ensure_warehouse(conn, with_ledger=with_ledger)


def ensure_warehouse(conn: psycopg.Connection[Any], *, with_ledger: bool = False) -> None:
    """Adds what an existing warehouse lacks (tables added since it was created, ledger migrations)."""
    for path in IDEMPOTENT_SQL:
        _apply(conn, path)
    if with_ledger:
        migrate(conn)
    conn.commit()

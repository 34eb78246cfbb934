"""The `orders` dataset in MariaDB: the same rows as datagen.ORDERS_FILL, generated inside the server.

MariaDB's SEQUENCE engine (`seq_1_to_N`) produces the numbers, so millions of rows take seconds and
no client memory. DATETIME(6) holds order_ts (naive UTC, as OLTP schemas usually store it).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

# The table as the mariadb container creates it (config/mariadb-init), under any name.
_INIT_SQL = Path(__file__).resolve().parents[1] / "config" / "mariadb-init" / "01-shop-orders.sql"
ORDERS_DDL_MYSQL = _INIT_SQL.read_text().replace(
    "CREATE TABLE IF NOT EXISTS orders (", "CREATE TABLE {table} (", 1
)

ORDERS_FILL_MYSQL = """
INSERT INTO {table}
SELECT seq,
       1 + (seq * 7919) % 50000,
       TIMESTAMPADD(MICROSECOND, FLOOR(seq / {rows} * {days} * 86400000000), '{start}'),
       ELT(1 + seq % 6, 'pending', 'paid', 'shipped', 'delivered', 'cancelled', 'returned'),
       ROUND(((seq * 104729) % 100000) / 100 + 1, 2),
       1 + seq % 9,
       IF(seq % 4 = 0, NULL, seq % 30),
       ELT(1 + seq % 4, 'web', 'mobile', 'store', 'partner'),
       ELT(1 + seq % 8, 'US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'ES'),
       IF(seq % 10 = 0, NULL, CONCAT('order ', seq, ' for customer ', 1 + (seq * 7919) % 50000))
FROM {database}.seq_{first}_to_{last}
"""


def create_mysql_orders(
    conn: Any,
    database: str,
    table: str = "orders",
    rows: int = 1_000_000,
    start: date = date(2026, 1, 1),
    days: int = 180,
    batch: int = 500_000,
) -> None:
    """(Re)create database.table with `rows` orders; `conn` is a MySQLdb connection."""
    ident = f"`{database}`.`{table}`"
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {ident}")
        cur.execute(ORDERS_DDL_MYSQL.format(table=ident))
        for first in range(1, rows + 1, batch):
            last = min(first + batch - 1, rows)
            cur.execute(
                ORDERS_FILL_MYSQL.format(
                    table=ident,
                    database=f"`{database}`",
                    first=first,
                    last=last,
                    rows=rows,
                    days=days,
                    start=start,
                )
            )
            conn.commit()
        cur.execute(f"ANALYZE TABLE {ident}")
        cur.fetchall()
    conn.commit()

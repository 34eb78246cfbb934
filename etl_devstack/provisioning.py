"""The platform's and the demo's databases: create them, fill the source, build the warehouse and its
ledger, migrate Airflow's metadata DB, drop them again (the e2e clean-up)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from etl_devstack.datagen import create_orders
from etl_devstack.mysql_source import drop_mariadb, prepare_mariadb
from etl_devstack.runfiles import tail
from etl_devstack.settings import REPO_ROOT, Echo, PlatformError, PlatformState
from etl_devstack.warehouse import create_warehouse, ensure_warehouse


def create_databases(admin: psycopg.Connection[Any], names: Iterable[str]) -> None:
    """CREATE DATABASE each name the server does not have yet (an autocommit connection)."""
    existing = {r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()}
    for name in names:
        if name not in existing:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    conn.commit()
    return bool(row and row[0])


def prepare_databases(state: PlatformState, rows: int, days: int, echo: Echo) -> None:
    """The platform's databases, the source's orders when it has none, the warehouse and its ledger
    (created, or brought up to date: idempotent), and MariaDB's shop when MariaDB answered."""
    server = state.pg_server()
    dbs = state.databases
    with server.connect() as admin:
        create_databases(admin, dbs.values())
    with psycopg.connect(server.conninfo(dbs["source"])) as src:
        if not table_exists(src, "public.orders"):
            echo(f"generating {rows:,} orders over {days} days in {dbs['source']} ...")
            create_orders(src, rows=rows, days=days)
    with psycopg.connect(server.conninfo(dbs["warehouse"])) as wh:
        if not table_exists(wh, "warehouse.orders_clean"):
            echo(f"creating the warehouse tables and the run ledger in {dbs['warehouse']}")
            create_warehouse(wh, with_ledger=True)
        else:  # idempotent: a table or ledger migration added since the last `up`
            ensure_warehouse(wh, with_ledger=True)
    if state.mysql.get("answered"):
        prepare_mariadb(state, rows, days, echo)


def drop_databases(state: PlatformState) -> None:
    """Drop the platform's databases (the e2e test's clean-up; `down` keeps them)."""
    with state.pg_server().connect() as admin:
        for name in state.databases.values():
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    drop_mariadb(state)


def migrate(airflow: str, env: Mapping[str, str], log_path: Path, deadline: float) -> None:
    """`airflow db migrate` against the platform's metadata DB, its output appended to `log_path`."""
    with open(log_path, "ab") as log:
        proc = subprocess.run(
            [airflow, "db", "migrate"],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=max(deadline - time.monotonic(), 1),
            check=False,
        )
    if proc.returncode != 0:
        raise PlatformError(f"`airflow db migrate` failed ({proc.returncode})\n" + tail(log_path))

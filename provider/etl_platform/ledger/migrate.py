"""Creates or upgrades the ledger schema from include/sql/*.sql, in file-name order.

Each file is idempotent on its own; `etl_audit.schema_migrations` records what ran (with the file's
checksum) and an advisory lock keeps two migrators from interleaving.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

_LOCK_KEY = 0x45544C4C  # "ETLL"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("etl_platform") / "sql"
    return sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Applies what has not run (or changed) and returns the file names applied."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS etl_audit")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS etl_audit.schema_migrations ("
            "name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = dict(conn.execute("SELECT name, checksum FROM etl_audit.schema_migrations").fetchall())
        for name, text in migration_files():
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if done.get(name) == checksum:
                continue
            conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # our own files, never user input
            conn.execute(
                "INSERT INTO etl_audit.schema_migrations (name, checksum) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                (name, checksum),
            )
            applied.append(name)
    return applied


if __name__ == "__main__":  # python -m etl_platform.ledger.migrate "<libpq conninfo>"
    import sys

    with psycopg.connect(sys.argv[1]) as connection:
        print("applied:", ", ".join(migrate(connection)) or "nothing (up to date)")

"""Per-session databases and per-test schemas on the test PostgreSQL server."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_devstack.postgres import PgServer, probe_postgres, start_embedded_postgres
from etl_devstack.services import announce_fallback, require_or_fall_back

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# libpq's default host when a conninfo names none: a socket directory that cannot exist, so a
# connection made without the harness's host fails naming this path instead of quietly reaching
# the machine's own server through /var/run/postgresql.
NO_DEFAULT_PGHOST = "/nonexistent/etl-tests-name-the-host-the-harness-gave"
_LIBPQ_DEFAULT_ENV = ("PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR")


def forbid_libpq_defaults() -> None:
    """Make every hostless PostgreSQL connection of this process (and its children) fail loudly.

    The tests must connect where the harness says (ETL_TEST_POSTGRES_URL or the embedded server);
    a developer's PGHOST or a service file would otherwise decide for a connection that forgot."""
    for name in _LIBPQ_DEFAULT_ENV:
        os.environ.pop(name, None)
    os.environ["PGHOST"] = NO_DEFAULT_PGHOST


def resolve_test_postgres() -> PgServer:
    """ETL_TEST_POSTGRES_URL's server (default 127.0.0.1:5432) if it answers, else an embedded one;
    with ETL_TEST_REQUIRE_SERVICES=1 a RuntimeError naming the URL instead."""
    url = os.environ.get("ETL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    found = probe_postgres(url)
    if found:
        return found
    require_or_fall_back("PostgreSQL", "ETL_TEST_POSTGRES_URL", url)
    server = start_embedded_postgres()
    announce_fallback("PostgreSQL", url, f"an embedded PostgreSQL (pgserver, socket {server.host})")
    return server


def create_database(server: PgServer, prefix: str) -> str:
    dbname = f"{prefix}_{secrets.token_hex(4)}"
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return dbname


def drop_database(server: PgServer, dbname: str) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


@dataclass
class SchemaDb:
    """One test's private schema in a session database; search_path points at it in every connection."""

    server: PgServer
    dbname: str
    schema: str

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.dbname, options=f"-csearch_path={self.schema}")

    def uri(self, *, scheme: str = "postgresql") -> str:
        """AIRFLOW_CONN_<ID> value; the search_path rides along as the `options` extra."""
        return self.server.uri(self.dbname, scheme=scheme, options=f"-csearch_path={self.schema}")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True)

    def table(self, name: str) -> str:
        """The schema-qualified name ("schema.table") to hand to the code under test."""
        return f"{self.schema}.{name}"


def schema_name_for(test_name: str) -> str:
    """A unique, valid, unquoted identifier (≤ 63 bytes) that still says which test made it."""
    slug = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{slug}_{secrets.token_hex(4)}"


def create_schema(server: PgServer, dbname: str, test_name: str) -> SchemaDb:
    schema = schema_name_for(test_name)
    with server.connect(dbname) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return SchemaDb(server, dbname, schema)


def drop_schema(db: SchemaDb) -> None:
    with db.server.connect(db.dbname) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(db.schema)))

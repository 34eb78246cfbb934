"""MariaDB for tests: the server from ETL_TEST_MYSQL_URL, or a private mariadbd if none answers.

Isolation is one database per test (MySQL has no schemas inside a database: a database is the namespace),
named after the test, created empty and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any

import MySQLdb

from etl_devstack.mariadb import MySqlServer, probe_mysql, start_private_mariadbd
from etl_devstack.services import announce_fallback, require_or_fall_back

MYSQL_URL_ENV = "ETL_TEST_MYSQL_URL"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/"
# DROP DATABASE waits for the metadata lock that any open transaction on one of its tables holds (on any
# connection); lock_wait_timeout defaults to a year. A test that leaks such a transaction must fail the
# teardown, not hang the session.
DROP_LOCK_WAIT_TIMEOUT_S = 10


def resolve_test_mysql() -> MySqlServer:
    """ETL_TEST_MYSQL_URL's server (default 127.0.0.1:3306, root) if it answers, else a private mariadbd;
    with ETL_TEST_REQUIRE_SERVICES=1 a RuntimeError naming the URL instead."""
    url = os.environ.get(MYSQL_URL_ENV, DEFAULT_MYSQL_URL)
    found = probe_mysql(url)
    if found:
        return found
    require_or_fall_back("MariaDB", MYSQL_URL_ENV, url)
    server = start_private_mariadbd()
    announce_fallback("MariaDB", url, f"a private mariadbd on {server.host}:{server.port}")
    return server


def database_name_for(test_name: str) -> str:
    """A unique, valid, unquoted database name (≤ 64 chars) that still says which test made it."""
    slug = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{slug}_{secrets.token_hex(4)}"


def _quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class MyDb:
    """One test's own database on the test MariaDB server."""

    server: MySqlServer
    database: str

    def uri(self) -> str:
        """The AIRFLOW_CONN_<ID> value: conn_type `mysql`, schema = this database."""
        return self.server.uri(self.database)

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (mysqlclient driver, utf8mb4)."""
        return f"{self.server.uri(self.database).replace('mysql://', 'mysql+mysqldb://', 1)}?charset=utf8mb4"

    def connect(self) -> Any:
        """A MySQLdb connection to this database (utf8mb4, autocommit)."""
        return self.server.connect(self.database)

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; the rows it returns (an empty list for none)."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()


def create_my_db(server: MySqlServer, test_name: str) -> MyDb:
    database = database_name_for(test_name)
    conn = server.connect()
    try:
        conn.cursor().execute(f"CREATE DATABASE {_quote_ident(database)} CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return MyDb(server, database)


def drop_my_db(db: MyDb) -> None:
    """DROP DATABASE IF EXISTS, after killing the connections still using it (like PostgreSQL's
    DROP DATABASE ... WITH (FORCE)); a transaction left open elsewhere fails it after 10 s, not never."""
    conn = db.server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(f"SET SESSION lock_wait_timeout = {DROP_LOCK_WAIT_TIMEOUT_S}")
        cursor.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
            (db.database,),
        )
        for (thread_id,) in cursor.fetchall():
            with contextlib.suppress(MySQLdb.OperationalError):  # gone meanwhile
                cursor.execute(f"KILL CONNECTION {int(thread_id)}")
        try:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quote_ident(db.database)}")
        except MySQLdb.OperationalError as exc:
            raise RuntimeError(
                f"DROP DATABASE {db.database} gave up after {DROP_LOCK_WAIT_TIMEOUT_S} s: a connection still "
                f"holds an open transaction on one of its tables ({exc})"
            ) from exc
    finally:
        conn.close()

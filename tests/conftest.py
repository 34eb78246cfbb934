"""Session fixtures for PostgreSQL, Redis, MariaDB, S3 and Airflow; the logic lives in tests/harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from etl_devstack import services
from etl_devstack.postgres import start_embedded_postgres
from harness import (
    MyDb,
    MySqlServer,
    PgServer,
    RedisDb,
    RedisServer,
    S3Bucket,
    S3Server,
    SchemaDb,
    ensure_metadata_db,
    resolve_test_mysql,
    resolve_test_postgres,
    resolve_test_redis,
    start_s3_server,
)
from harness.airflow_env import configure_airflow_env, remove_airflow_home
from harness.mysqldb import create_my_db, drop_my_db
from harness.postgres import create_database, create_schema, drop_database, drop_schema, forbid_libpq_defaults
from harness.redisdb import redis_db as _redis_db
from harness.s3 import create_s3_bucket

_created_airflow_home: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Airflow reads its config on first import: point it at a throwaway home before any test imports it.
    global _created_airflow_home
    _created_airflow_home = configure_airflow_env()
    forbid_libpq_defaults()


def pytest_unconfigure(config: pytest.Config) -> None:
    remove_airflow_home(_created_airflow_home)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name every private server the harness started in place of a configured one, whatever the
    warning filters: a run against stand-ins must never look like a run against the machine's services."""
    if services.announced:
        terminalreporter.section("services the harness started itself")
        for message in services.announced:
            terminalreporter.write_line(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the e2e tests last: their session-scoped platform (a dozen processes holding database
    connections) then starts after every other test and never competes with them, for CPU or for the
    connection counts the health tests measure."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """ETL_TEST_POSTGRES_URL's server, or an embedded one started for this session."""
    server = resolve_test_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def quiet_pg() -> Iterator[PgServer]:
    """A private PostgreSQL that no other client uses: the health tests count its connections, and
    the shared server's other clients (a scheduler, another session's tests) come and go."""
    server = start_embedded_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _pg_databases(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    names = (create_database(pg_server, "etl_test_src"), create_database(pg_server, "etl_test_dst"))
    yield names
    for name in names:
        drop_database(pg_server, name)


@pytest.fixture
def src_db(
    pg_server: PgServer, _pg_databases: tuple[str, str], request: pytest.FixtureRequest
) -> Iterator[SchemaDb]:
    """A fresh schema in the session's source database, dropped after the test."""
    db = create_schema(pg_server, _pg_databases[0], request.node.name)
    yield db
    drop_schema(db)


@pytest.fixture
def dst_db(
    pg_server: PgServer, _pg_databases: tuple[str, str], request: pytest.FixtureRequest
) -> Iterator[SchemaDb]:
    """A fresh schema in the session's destination database, dropped after the test."""
    db = create_schema(pg_server, _pg_databases[1], request.node.name)
    yield db
    drop_schema(db)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = resolve_test_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """ETL_TEST_REDIS_URL, or the embedded server's URL (db 0)."""
    return redis_server.url


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisDb]:
    """This test's own Redis database (index 1..15 round-robin), flushed before and after."""
    yield from _redis_db(redis_server)


@pytest.fixture
def redis_client(redis_db: RedisDb) -> redis.Redis:
    return redis_db.client


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySqlServer]:
    """ETL_TEST_MYSQL_URL's server (default root@127.0.0.1:3306), or a private mariadbd for this session."""
    server = resolve_test_mysql()
    yield server
    server.stop()


@pytest.fixture
def my_db(mysql_server: MySqlServer, request: pytest.FixtureRequest) -> Iterator[MyDb]:
    """This test's own MariaDB database (named after the test), dropped after it."""
    db = create_my_db(mysql_server, request.node.name)
    yield db
    drop_my_db(db)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An in-process moto S3 server on a free 127.0.0.1 port."""
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> Iterator[S3Bucket]:
    """This test's own empty bucket; `.conn_id`/`.conn_uri` (or `.conn_env`) give the Airflow `aws`
    connection that reaches it. Deleted, with its objects, after the test."""
    bucket = create_s3_bucket(s3_server, request.node.name)
    yield bucket
    s3_server.delete_bucket(bucket.name)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The throwaway AIRFLOW_HOME, its SQLite metadata DB migrated on first use."""
    return ensure_metadata_db()

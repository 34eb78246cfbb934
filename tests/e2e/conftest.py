"""Fixtures for the platform end-to-end test: the real processes on the test PostgreSQL and Redis.

They start nine processes and take about three minutes; `make test` (and so CI) runs them, `make e2e`
runs only them, and `pytest -m "not e2e"` leaves them out while iterating.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from etl_devstack.platform import Platform, PlatformSettings, free_port
from harness import PgServer, RedisDb, RedisServer
from harness.redisdb import redis_db as _redis_db
from tests.e2e.helpers import AirflowApi, StatsdListener, platform_processes

# 1.2M orders over 10 days from 2026-01-01: ~120k rows per daily interval, two 100k-row chunks per load.
E2E_ROWS, E2E_DAYS = 1_200_000, 10


@pytest.fixture(scope="session")
def statsd() -> Iterator[StatsdListener]:
    """The platform's StatsD target: a UDP socket in this process."""
    listener = StatsdListener().start()
    yield listener
    listener.stop()


@pytest.fixture(scope="session")
def e2e_redis(redis_server: RedisServer) -> Iterator[RedisDb]:
    """A Redis database of its own for the broker, flushed before and after."""
    yield from _redis_db(redis_server)


@pytest.fixture(scope="session")
def platform(
    pg_server: PgServer,
    e2e_redis: RedisDb,
    statsd: StatsdListener,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    """The whole platform, up, in a temp run folder with free ports and databases of its own.

    Teardown stops every process (also when `up` or a test failed), checks that none is left and
    drops the databases.
    """
    settings = PlatformSettings(
        postgres_url=pg_server.uri(pg_server.admin_dbname),
        redis_url=e2e_redis.url,
        port=free_port(),
        statsd=f"127.0.0.1:{statsd.port}",
        rows=E2E_ROWS,
        days=E2E_DAYS,
        db_prefix=f"etl_e2e_{secrets.token_hex(3)}",
        job_schedule=False,  # no scheduled or catch-up runs when the DAG is unpaused: only ours
        embedded_postgres_fallback=False,
        embedded_redis_fallback=False,
    )
    platform = Platform(tmp_path_factory.mktemp("platform"), settings)
    try:
        platform.up(timeout=900, echo=lambda msg: print(f"[platform] {msg}", flush=True))
        yield platform
    finally:
        try:
            platform.down(timeout=30, echo=lambda msg: print(f"[platform] {msg}", flush=True))
            leftovers = platform_processes(platform)
        finally:
            if platform.state_file.exists():
                platform.drop_databases()
        assert not leftovers, f"processes left after down(): {[(p.pid, p.name()) for p in leftovers]}"


@pytest.fixture(scope="session")
def api(platform: Platform) -> Iterator[AirflowApi]:
    client = AirflowApi(platform)
    yield client
    client.close()

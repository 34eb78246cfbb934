"""Fixtures for the platform end-to-end test: the real processes on the test PostgreSQL and Redis.

The platform is started and stopped through scripts/platformctl.py's cmd_up / cmd_down, the functions
`make up` / `make down` run, so the suite tests those commands as well (their printed output: see
test_platformctl_e2e.py) without paying for a second platform. Eleven recorded processes (PgBouncer, four
Airflow services, six workers: one per queue and a second load worker for the mapped bulk load), beside
dags/ a DAG bundle of the suite's own (tests/dags/e2e: the health gate the tests hold, the Transfer view's
copy); `make test` (and so CI) runs them, `make e2e` runs only them, and `pytest -m "not e2e"` leaves them
out.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import sys
from collections.abc import Iterator
from typing import TextIO

import pytest

from etl_devstack.platform import DEFAULT_WORKERS, Platform, PlatformSettings, WorkerSpec, free_port
from etl_devstack.postgres import probe_postgres
from etl_devstack.redis import probe_redis
from harness import REPO_ROOT, PgServer, RedisDb, RedisServer
from harness.redisdb import redis_db as _redis_db
from scripts import platformctl
from tests.e2e.helpers import (
    DASHBOARD_CACHE_TTL_S,
    AirflowApi,
    StatsdListener,
    platform_processes,
    still_running,
)

# 1.2M orders over 10 days from 2026-01-01: ~120k rows per daily interval, two 100k-row chunks per load.
E2E_ROWS, E2E_DAYS = 1_200_000, 10
# A second worker on the load queue: etl_orders_bulk's mapped ranges must spread over both.
SECOND_LOAD_WORKER = WorkerSpec("load-2", ("load",), 2, max_memory_per_child_kib=1_048_576)
# The suite's own DAGs (e2e_health_gate, e2e_transfer_view), a DAG bundle beside dags/.
E2E_DAGS = REPO_ROOT / "tests" / "dags" / "e2e"
_printed: dict[str, str] = {}  # what `up` printed, for test_platformctl_e2e.py


class _Tee(io.TextIOBase):
    """stdout that is also kept: the live progress stays visible with -s."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


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
    """The whole platform, up through `make up`'s code path, in a temp run folder with free ports and
    databases of its own.

    Teardown stops every process through `make down`'s code path (also when `up` or a test failed),
    checks that none is left and that the PostgreSQL and Redis the platform used still answer (down
    stops what up started, never a server it found), then drops the databases.
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
        workers=(*DEFAULT_WORKERS, SECOND_LOAD_WORKER),
        extra_dag_folders=(str(E2E_DAGS),),
        extra_env=(("AIRFLOW__ETL_PLATFORM__DASHBOARD_CACHE_TTL", str(DASHBOARD_CACHE_TTL_S)),),
    )
    platform = Platform(tmp_path_factory.mktemp("platform"), settings)
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(_Tee(printed, sys.stdout)):
            code = platformctl.cmd_up(platform, timeout=900)
        assert code == 0, f"`up` failed ({code}):\n{printed.getvalue()[-4000:]}"
        _printed["up"] = printed.getvalue()
        yield platform
    finally:
        try:
            # Every process of the recorded trees, by pid and start time: Celery's pool children and
            # the api-server rename themselves (setproctitle), which can hide their AIRFLOW_HOME.
            known = [
                proc for record in platform._pids()["processes"].values() for proc in platform._tree(record)
            ]
            printed = io.StringIO()
            with contextlib.redirect_stdout(_Tee(printed, sys.stdout)):
                platformctl.cmd_down(platform)
            leftovers = still_running({p.pid: p for p in [*known, *platform_processes(platform)]}.values())
        finally:
            if platform.state_file.exists():
                platform.drop_databases()
        assert not leftovers, f"processes left after down: {[(p.pid, p.name()) for p in leftovers]}"
        assert not platform.pids_file.exists(), "down leaves no pids.json behind"
        assert probe_postgres(settings.postgres_url) is not None, "down stopped the external PostgreSQL"
        assert probe_redis(e2e_redis.url), "down stopped the external Redis"


@pytest.fixture(scope="session")
def up_output(platform: Platform) -> str:
    """What `up` printed (cmd_up, as `make up` prints it)."""
    return _printed["up"]


@pytest.fixture(scope="session")
def api(platform: Platform) -> Iterator[AirflowApi]:
    client = AirflowApi(platform)
    yield client
    client.close()

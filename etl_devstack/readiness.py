"""Whether the platform's processes are ready: the api-server's health report, Celery ping replies."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from etl_devstack.pgbouncer import pgbouncer_answers
from etl_devstack.settings import PGBOUNCER_PROCESS, PlatformError, WorkerSpec

if TYPE_CHECKING:
    from etl_devstack.platform import Platform

HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def api_health(api_url: str) -> dict[str, Any] | None:
    """The api-server's /api/v2/monitor/health, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=3) as resp:
            return dict(json.loads(resp.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def all_healthy(health: dict[str, Any] | None) -> bool:
    """Every component the health report covers says healthy."""
    if health is None:
        return False
    return all((health.get(p) or {}).get("status") == "healthy" for p in HEALTH_PARTS)


def heartbeat_since(health: dict[str, Any], name: str, since: datetime) -> bool:
    """The scheduler, triggerer or dag-processor is healthy with a heartbeat at or after `since` (a dead
    one's last heartbeat stays "healthy" for a while)."""
    key = name.replace("-", "_")  # dag-processor -> dag_processor
    part = health.get(key) or {}
    beat = part.get(f"latest_{key}_heartbeat")
    return part.get("status") == "healthy" and isinstance(beat, str) and datetime.fromisoformat(beat) >= since


def ping_workers(broker_url: str, timeout: float = 1.0) -> list[str]:
    """Nodenames of the Celery workers on this broker that answer a ping."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:  # broker hiccup while starting: just not ready yet
        return []
    finally:
        app.close()
    return [name for reply in replies for name in reply]


def wait_ready(platform: Platform, deadline: float, workers: Iterable[WorkerSpec]) -> None:
    """Until the api-server reports every component healthy and each worker answers a ping; raises
    naming a process that exited, or what it still waits for at `deadline`."""
    pending_workers = {w.nodename for w in workers}
    healthy = False
    while True:
        for proc in platform.status():
            if not proc.alive:
                raise PlatformError(f"{proc.name} exited during start-up\n" + platform.tails([proc.name]))
        if not healthy:
            healthy = all_healthy(api_health(platform.api_url))
        if healthy and pending_workers:
            pending_workers -= set(platform.ping_workers())
        if healthy and not pending_workers:
            return
        if time.monotonic() > deadline:
            waiting = "api-server health" if not healthy else f"workers {sorted(pending_workers)}"
            names = ["api-server", "scheduler"] if not healthy else list(platform.process_names())
            raise PlatformError(f"timed out waiting for {waiting}\n" + platform.tails(names))
        time.sleep(1)


def wait_restarted(platform: Platform, names: Iterable[str], since: datetime, deadline: float) -> None:
    """Until each restarted process is ready: the api-server answers its health endpoint; the
    scheduler, triggerer and dag-processor have heartbeated since `since` (the health endpoint's
    latest heartbeat); workers answer a ping; PgBouncer accepts connections. Raises naming the one
    that exited or is not ready."""
    pending = list(names)
    workers = {platform.worker(n).nodename: n for n in pending if n.startswith("worker-")}
    while True:
        for proc in platform.status():
            if proc.name in pending and not proc.alive:
                raise PlatformError(f"{proc.name} exited after its restart\n" + platform.tail(proc.name))
        health = api_health(platform.api_url)
        if workers:
            answered = set(platform.ping_workers()) & set(workers)
            pending = [n for n in pending if n not in {workers[w] for w in answered}]
        pending = [n for n in pending if not _restarted_ready(platform, n, health, since)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise PlatformError(
                f"timed out waiting for {', '.join(pending)} to be ready after the restart\n"
                + platform.tails(pending)
            )
        time.sleep(0.5)


def _restarted_ready(platform: Platform, name: str, health: dict[str, Any] | None, since: datetime) -> bool:
    if name.startswith("worker-"):
        return False  # ping_workers() decides
    if name == PGBOUNCER_PROCESS:
        state = platform.state()
        return pgbouncer_answers(state.ports["pgbouncer"], state.pg_server().user)
    if health is None:
        return False
    return name == "api-server" or heartbeat_since(health, name, since)

"""Helpers for the platform end-to-end test: a StatsD listener, a REST client, digests, waits, diagnostics."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import psycopg
from psycopg import sql

from benchmarks.datagen import ORDERS_COLUMNS
from etl_devstack.platform import Platform

T = TypeVar("T")
# The dashboard's stats cache lives an hour on the e2e platform: a fresh count after a run can only come
# from the invalidation a finished run triggers, never from an entry expiring (test_dashboard_e2e.py).
DASHBOARD_CACHE_TTL_S = 3600


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` s saying what and why."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


class StatsdListener:
    """A UDP socket in the test process, the platform's StatsD target; keeps every line received."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-listener", daemon=True)

    def start(self) -> StatsdListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._lines.extend(line for line in data.decode(errors="replace").splitlines() if line)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def names(self) -> set[str]:
        """Metric names without InfluxDB-style tags (`name,tag=v:1|c` -> `name`)."""
        return {line.split(":", 1)[0].split(",", 1)[0] for line in self.lines()}

    def matching(self, prefix: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(prefix)]


class AirflowApi:
    """The api-server's REST API with a token from the simple auth manager (user admin)."""

    def __init__(self, platform: Platform) -> None:
        self.base = platform.api_url
        user, password = platform.login()
        token = httpx.post(
            f"{self.base}/auth/token", json={"username": user, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:2000]}")
        return resp.json() if resp.content else None

    def get_or_none(self, path: str) -> Any:
        resp = self.client.get(path)
        return resp.json() if resp.status_code == 200 else None

    def close(self) -> None:
        self.client.close()


def interval_digest(conninfo: str, table: str, start: datetime, end: datetime) -> tuple[int, int, str]:
    """(rows, distinct ids, md5 of the rows' text in id order) of `table` for [start, end).

    Only columns id..note: the warehouse adds processed_at. The session runs in UTC so timestamps
    print the same on both sides.
    """
    query = sql.SQL(
        "SELECT count(*), count(DISTINCT id), "
        "md5(coalesce(string_agg(ROW({cols})::text, E'\\n' ORDER BY id), '')) "
        "FROM {table} WHERE order_ts >= %s AND order_ts < %s"
    ).format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in ORDERS_COLUMNS),
        table=sql.Identifier(*table.split(".")),
    )
    with psycopg.connect(conninfo, autocommit=True, options="-c TimeZone=UTC") as conn:
        row = conn.execute(query, (start, end)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), str(row[2])


def table_rows(conninfo: str, table: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        ).fetchone()
    return int(row[0]) if row else 0


def platform_processes(platform: Platform) -> list[psutil.Process]:
    """Live processes that belong to this platform: any with its AIRFLOW_HOME in their environment."""
    home = str(platform.airflow_home)
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("AIRFLOW_HOME") == home:
                found.append(proc)
    return found


def still_running(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run as themselves (same pid and start time; zombies do not count)."""
    running = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
    return running


def alive_pids(pids: Iterable[int]) -> list[int]:
    """The pids that still run (zombies, already dead but not yet reaped, do not count)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def workers_that_received(platform: Platform, celery_task_id: str) -> list[str]:
    """Names of the workers whose log shows they received this Celery task (by its id)."""
    return [
        spec.name
        for spec in platform.settings.workers
        if celery_task_id in _read(platform.log_path(spec.process))
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def task_logs(platform: Platform, dag_id: str, run_id: str, lines: int = 30) -> str:
    """The tail of every task attempt log of a run (AIRFLOW_HOME/logs/dag_id=.../run_id=...)."""
    folder = platform.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    parts = []
    for path in sorted(folder.glob("task_id=*/**/*.log")):
        text = _read(path).splitlines()[-lines:]
        parts.append(f"--- {path.relative_to(platform.airflow_home)}\n" + "\n".join(text))
    return "\n".join(parts) or f"(no task logs under {folder})"


def explain(
    platform: Platform, dag_id: str | None = None, run_id: str | None = None, names: Iterable[str] = ()
) -> str:
    """What to look at when a wait fails: process status, log tails, the run's task logs."""
    status = "\n".join(
        f"  {p.name}: pid {p.pid} {'running' if p.alive else 'DEAD'}" for p in platform.status()
    )
    text = [f"processes:\n{status}", platform.tails(names or ["scheduler", *_worker_names(platform)], 25)]
    if dag_id and run_id:
        text.append(task_logs(platform, dag_id, run_id))
    return "\n".join(text)


def _worker_names(platform: Platform) -> list[str]:
    return [w.process for w in platform.settings.workers]


# --------------------------------------------------------------------------------- the health gate
GATE_DAG_ID = "e2e_health_gate"  # tests/dags/e2e/health_gate_e2e.py, loaded as a DAG bundle of its own
TRIGGER_CLASS = "etl_platform.triggers.performance.PerformanceCheckTrigger"


def ensure_dag_ready(platform: Platform, api: AirflowApi, dag_id: str) -> None:
    """Wait until the dag-processor serialized the DAG (failing on its import error), then unpause it."""

    def parsed() -> bool:
        errors = api.request("GET", "/api/v2/importErrors").get("import_errors", [])
        broken = [e for e in errors if dag_id in e.get("stack_trace", "") or dag_id in e.get("filename", "")]
        assert not broken, f"{dag_id} does not import: {broken}"
        return api.get_or_none(f"/api/v2/dags/{dag_id}") is not None

    wait_until(
        parsed,
        timeout=300,
        what=f"the dag-processor to parse {dag_id}",
        interval=2,
        explain=lambda: explain(platform, names=["dag-processor"]),
    )
    api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})


@contextlib.contextmanager
def gate_hold(platform: Platform, messages: int = 3) -> Iterator[str]:
    """A queue no worker serves, holding `messages` entries in the platform's broker while the block
    runs: e2e_health_gate reads it (conf hold_queue) as critical until the block ends and deletes it."""
    import redis

    queue = f"e2e_gate_hold_{secrets.token_hex(4)}"
    client = redis.Redis.from_url(platform.state().redis_url)
    try:
        client.rpush(queue, *[f"held-{i}" for i in range(messages)])
        yield queue
    finally:
        client.delete(queue)
        client.close()


def trigger_gate(api: AirflowApi, hold_queue: str) -> str:
    run = api.request(
        "POST",
        f"/api/v2/dags/{GATE_DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"hold_queue": hold_queue}},
    )
    return str(run["dag_run_id"])


def task_instance(api: AirflowApi, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))


def alive_triggerer_job_ids(api: AirflowApi) -> set[int]:
    jobs = api.request("GET", "/api/v2/jobs", params={"job_type": "TriggererJob", "is_alive": True})["jobs"]
    return {int(job["id"]) for job in jobs}


def wait_gate_deferred_in_triggerer(
    platform: Platform, api: AirflowApi, run_id: str, other_than: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Until the gate is `deferred` with its PerformanceCheckTrigger held by a live triggerer job (not
    the one holding it in `other_than`, an earlier reading of the task instance); fails at once if the
    gate finishes instead. Returns the task instance (REST)."""
    previous = ((other_than or {}).get("trigger") or {}).get("triggerer_id")

    def deferred() -> dict[str, Any] | None:
        ti = task_instance(api, GATE_DAG_ID, run_id, "gate")
        assert ti["state"] not in ("success", "failed", "up_for_retry"), f"the gate did not defer: {ti}"
        holder = (ti.get("trigger") or {}).get("triggerer_id")
        if ti["state"] == "deferred" and holder != previous and holder in alive_triggerer_job_ids(api):
            return ti
        return None

    return wait_until(
        deferred,
        timeout=300,
        interval=0.5,
        what=f"{GATE_DAG_ID} run {run_id}'s gate to defer into a live triggerer",
        explain=lambda: explain(
            platform, GATE_DAG_ID, run_id, names=["triggerer", "scheduler", "worker-extract"]
        ),
    )


def wait_run_finished(
    platform: Platform, api: AirflowApi, dag_id: str, run_id: str, timeout: float = 600
) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return dict(run) if run["state"] in ("success", "failed") else None

    return wait_until(
        finished,
        timeout=timeout,
        interval=1,
        what=f"{dag_id} run {run_id} to finish",
        explain=lambda: explain(platform, dag_id, run_id, names=["scheduler", "triggerer"]),
    )

"""`make up` / `make status` / `make down`: the docker-compose topology as local processes (etl_devstack.platform).

    python scripts/platformctl.py up       # start PostgreSQL/Redis if needed, Airflow and the workers;
                                           # on a running platform: restart only what is dead
    python scripts/platformctl.py status   # each process: running/DEAD, pid, uptime
    python scripts/platformctl.py down     # stop exactly what `up` started
    python scripts/platformctl.py airflow -- dags list   # the airflow CLI against the running platform

Exit codes: `up` 0 when everything runs (started, restarted or already running), 1 when a process
could not start (the message names it and shows its log tail). `status` 0 when every process runs,
1 when one or more is dead (listed as DEAD; `make up` restarts them), 3 when nothing is up.

Settings come from ETL_PLATFORM_* variables (see PlatformSettings.from_env): PROFILE (full: one worker
per queue as in docker-compose; small: one worker for every queue, for a laptop), POSTGRES_URL,
REDIS_URL, PORT (8080), HOST, STATSD (127.0.0.1:9125), ROWS (200000), DAYS, JOB_SCHEDULE (true). A
running platform keeps the settings it was started with until `down`.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from etl_devstack.airflow_env import airflow_bin
from etl_devstack.platform import Platform
from etl_devstack.settings import DEFAULT_RUN_DIR, REPO_ROOT, PlatformError, PlatformSettings
from etl_devstack.urls import redact_url


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_up(platform: Platform, *, timeout: float = 600) -> int:
    """`make up`: bring the platform up and print where it is and how to log in (the e2e fixture calls
    this very function, so the test suite starts the platform exactly as `make up` does)."""
    try:
        report = platform.up(timeout=timeout, echo=lambda msg: print(f"[up] {msg}", flush=True))
    except PlatformError as exc:
        print(f"[up] failed: {exc}", file=sys.stderr)
        return 1
    if not report.fresh:
        print_status(platform)
        return 0
    state = platform.state()
    user, password = platform.login()
    pg = state.pg_server()
    where = f"embedded, socket {pg.host}" if pg.embedded else f"{pg.host}:{pg.port}"
    pgbouncer = f"127.0.0.1:{state.ports['pgbouncer']} (warehouse)" if state.pgbouncer else "not installed"
    run = _relative(platform.run_dir)
    run_arg = "" if platform.run_dir == DEFAULT_RUN_DIR.resolve() else f" --run-dir {run}"
    workers = ", ".join(
        f"{w.celery_hostname} -q {','.join(w.queues)} -c {w.concurrency}" for w in platform.settings.workers
    )
    print(
        "\n".join(
            [
                "",
                "etl-platform is up",
                f"  UI:          {platform.ui_url}",
                f"  login:       {user} / {password}",
                f"               (stored in {_relative(platform.passwords_file)})",
                f"  PostgreSQL:  {where}, databases {', '.join(state.databases.values())}",
                f"  Redis:       {redact_url(state.redis_url)}{' (embedded)' if state.redis_embedded else ''}",
                f"  StatsD:      {platform.settings.statsd}",
                f"  PgBouncer:   {pgbouncer}",
                f"  workers:     {workers}",
                f"  run folder:  {run} (logs in {run}/logs, secrets in {run}/secrets.env)",
                f"  airflow CLI: .venv/bin/python scripts/platformctl.py{run_arg} airflow -- dags list",
                f"  stop:        {'make down' if not run_arg else f'.venv/bin/python scripts/platformctl.py{run_arg} down'}",
            ]
        ),
        flush=True,
    )
    return 0


STATUS_DEAD, STATUS_NOTHING_UP = 1, 3


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (
        f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
    )


def print_status(platform: Platform) -> int:
    """One line per process (state, pid, uptime, log); returns `status`'s exit code (see the module doc)."""
    procs = {p.name: p for p in platform.status()}
    if not procs:
        print(f"nothing is up in {_relative(platform.run_dir)}")
        return STATUS_NOTHING_UP
    now = time.time()
    for name in [*platform.process_names(), *(n for n in procs if n not in platform.process_names())]:
        proc = procs.get(name)
        if proc is None:
            print(f"  {name:<22} pid {'-':<8} {'DEAD':<8} {'-':>8}  never started")
            continue
        state = "running" if proc.alive else "DEAD"
        print(f"  {name:<22} pid {proc.pid:<8} {state:<8} {_uptime(proc.uptime_s(now)):>8}  {proc.log}")
    dead = platform.dead()
    with contextlib.suppress(PlatformError):  # no platform.json: nothing to say about the servers
        for server, answers in platform.servers_status().items():
            print(f"  {server:<22} {'answers' if answers else 'DOES NOT ANSWER'}")
            if not answers:
                dead.append(server)
    if platform.is_up():
        print(f"  UI: {platform.ui_url}")
    if dead:
        print(f"  dead: {', '.join(dead)} (`make up` restarts the platform's processes)")
        return STATUS_DEAD
    return 0


def cmd_down(platform: Platform) -> int:
    stopped = platform.down(echo=lambda msg: print(f"[down] {msg}", flush=True))
    if stopped:
        print(
            f"[down] stopped {len(stopped)}: {', '.join(stopped)}; logs kept in {_relative(platform.logs_dir)}"
        )
    return 0


def cmd_airflow(platform: Platform, args: list[str]) -> int:
    return subprocess.call([airflow_bin(), *args], env=platform.env(), cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="run folder (.run/platform)")
    parser.add_argument("command", choices=["up", "down", "status", "airflow"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="for `airflow`: the CLI arguments")
    ns = parser.parse_args(argv)
    platform = Platform(ns.run_dir, PlatformSettings.from_env())
    if ns.command in ("status", "airflow"):  # a running platform's own settings (port, workers)
        platform.use_recorded_settings()
    if ns.command == "up":
        return cmd_up(platform)
    if ns.command == "down":
        return cmd_down(platform)
    if ns.command == "status":
        return print_status(platform)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    try:
        return cmd_airflow(platform, args)
    except PlatformError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

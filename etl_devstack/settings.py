"""What a local platform is asked for and what `up` resolved: paths, profiles, workers, PlatformSettings
and PlatformState (platform.json). Nothing here starts or touches a process."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from etl_devstack.postgres import DEFAULT_POSTGRES_URL, PgServer

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

    def with_recorded(self, recorded: Mapping[str, Any]) -> PlatformSettings | None:
        """These settings with the ones `up` recorded in platform.json over them (None when it recorded
        no workers: an older file)."""
        data = dict(recorded)
        if "workers" not in data:
            return None
        data["workers"] = tuple(WorkerSpec(**{**w, "queues": tuple(w["queues"])}) for w in data["workers"])
        data["extra_dag_folders"] = tuple(data.get("extra_dag_folders") or ())
        data["extra_env"] = tuple((str(k), str(v)) for k, v in data.get("extra_env") or ())
        known = set(PlatformSettings.__dataclass_fields__)
        return replace(self, **{k: v for k, v in data.items() if k in known})

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

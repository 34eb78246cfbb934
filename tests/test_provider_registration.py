"""Airflow discovers the provider: the CLI lists it and its hook, and its metadata passes Airflow's schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

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

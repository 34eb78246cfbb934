"""Throwaway AIRFLOW_HOME for the test process.

Airflow reads its configuration once, at import time, so this module must not import airflow and
`configure_airflow_env()` must run before anything else does (the root conftest's pytest_configure).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DAGS_FOLDER = REPO_ROOT / "tests" / "dags"
# The production DAG folder's shared modules (warehouse_assets, order_transforms), importable by the test
# DAGs in child processes too, as pyproject's pytest `pythonpath` makes them in this one.
SHARED_DAG_MODULES = REPO_ROOT / "dags"

# Written into every home this module creates, so a child process (a subprocess test, `airflow ...` CLI)
# that inherits AIRFLOW_HOME reuses the parent's home instead of creating its own.
_MARKER = ".etl-test-airflow-home"


def airflow_env_for(home: Path) -> dict[str, str]:
    """The environment that points Airflow at `home` (SQLite metadata DB, test DAGs, no examples)."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS_FOLDER),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(SHARED_DAG_MODULES), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def configure_airflow_env() -> Path | None:
    """Point this process at a fresh AIRFLOW_HOME; returns it (the caller deletes it), or None if reused.

    A home that a parent test process made is reused. Any other AIRFLOW_HOME/AIRFLOW_CONFIG (say a
    developer's real one) is overridden so tests never migrate or write a real metadata DB.
    """
    if "airflow" in sys.modules:
        raise RuntimeError("airflow was imported before the test harness could set AIRFLOW_HOME")
    inherited = os.environ.get("AIRFLOW_HOME")
    if inherited and (Path(inherited) / _MARKER).exists():
        return None
    home = Path(tempfile.mkdtemp(prefix="etl-airflow-home-"))
    (home / _MARKER).touch()
    os.environ.update(airflow_env_for(home))
    return home


def remove_airflow_home(home: Path | None) -> None:
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)

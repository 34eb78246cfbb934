"""The provider keeps the shape docs/architecture.md draws: small modules, short functions, layers that
import downwards only. Read from the source with `ast`, so a change that breaks the shape fails here,
naming the file, the function and its length, instead of waiting for a reviewer."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROVIDER = Path(__file__).resolve().parent.parent / "provider" / "etl_platform"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Data tables, not logic: the provider's metadata for Airflow's provider manager.
LONG_FUNCTIONS_ALLOWED = {("get_provider_info.py", "get_provider_info")}
# Engines do the work without Airflow, so they run (and are tested) without a task around them.
AIRFLOW_FREE = ("common", "transfer", "partitions", "ledger")
# package -> packages of the provider it must not import (lower layers never reach up or sideways).
FORBIDDEN_IMPORTS = {
    "common": ("transfer", "partitions", "health", "ledger", "dashboard", "operators", "sensors"),
    "transfer": ("partitions", "operators", "sensors", "dashboard", "listeners"),
    "partitions": ("transfer", "operators", "sensors", "dashboard", "listeners"),
    "ledger": ("operators", "sensors", "dashboard", "listeners"),
    "listeners": ("dashboard", "operators"),
}


def _modules() -> list[Path]:
    return sorted(PROVIDER.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(PROVIDER))


def _imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from etl_platform import dashboard` imports etl_platform.dashboard
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_walk_sees_the_provider() -> None:
    """Guards the checks below against passing on an empty or moved tree."""
    names = {_rel(p) for p in _modules()}
    assert {"transfer/engine.py", "transfer/spec.py", "operators/transfer.py", "common/errors.py"} <= names
    assert len(names) > 100, len(names)


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)} has {lines} lines (at most {MAX_MODULE_LINES})"


def test_no_function_is_long() -> None:
    too_long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES and (path.name, node.name) not in LONG_FUNCTIONS_ALLOWED:
                too_long.append(f"{_rel(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


@pytest.mark.parametrize("package", AIRFLOW_FREE)
def test_engine_imports_no_airflow(package: str) -> None:
    offenders = [
        f"{_rel(path)} imports {name}"
        for path in sorted((PROVIDER / package).rglob("*.py"))
        for name in _imported_modules(ast.parse(path.read_text()))
        if name == "airflow" or name.startswith("airflow.")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_layers_import_downwards(package: str) -> None:
    forbidden = tuple(f"etl_platform.{name}" for name in FORBIDDEN_IMPORTS[package])
    offenders = [
        f"{_rel(path)} imports {name}"
        for path in sorted((PROVIDER / package).rglob("*.py"))
        for name in _imported_modules(ast.parse(path.read_text()))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not offenders, offenders

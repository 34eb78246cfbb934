"""The how-to pages in docs/operators keep up with the code: every operator and sensor has a page whose
parameter table names exactly its `__init__` parameters, with their real defaults and templating, and
whose examples call it only with arguments it takes. Cheap: reads code and markdown, runs no Airflow."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseOperator

from etl_platform.get_provider_info import get_provider_info
from etl_platform.operators.transfer import StreamingTransferOperator

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "operators"
SECTIONS = ("## Parameters", "## Examples", "## Guarantees", "## Failure modes")
# | `name` | default | yes/no | what it does |
ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|\s*(?P<default>[^|]+?)\s*\|\s*(?P<templated>yes|no)\s*\|", re.M)
# The export page documents the subset of StreamingTransferOperator's parameters an export reads.
EXPORT_PAGE = "streaming-transfer-export.md"
EXPORT_PARAMS = {
    "source_conn_id",
    "source_table",
    "source_sql",
    "key_column",
    "chunk_rows",
    "destination_path",
    "destination_conn_id",
    "destination_format",
    "rows_per_file",
    "partition_by",
    "ledger_conn_id",
    "destination_asset",
    "profile",
}


def _documented_classes() -> list[type[BaseOperator]]:
    """Public operator and sensor classes of the modules the provider info lists."""
    info = get_provider_info()
    modules = [m for s in ("operators", "sensors") for e in info[s] for m in e["python-modules"]]
    found = []
    for name in modules:
        module = importlib.import_module(name)
        found += [
            obj
            for key, obj in vars(module).items()
            if not key.startswith("_")
            and isinstance(obj, type)
            and issubclass(obj, BaseOperator)
            and obj.__module__ == name
        ]
    return found


def _page_name(cls: type) -> str:
    stem = cls.__name__.removesuffix("Operator")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", stem).lower() + ".md"


def _own_params(cls: type) -> dict[str, inspect.Parameter]:
    """The parameters the provider's own classes add (the subclass's default wins), BaseOperator's not."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass.__module__.startswith("etl_platform") and "__init__" in vars(klass):
            for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                if p.name != "self" and p.kind is not p.VAR_KEYWORD:
                    params.setdefault(p.name, p)
    return params


def _all_params(cls: type) -> set[str]:
    """Every keyword the class accepts, BaseOperator's (task_id, queue, retries, ...) included."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass is not object:
            names |= {
                p.name
                for p in inspect.signature(vars(klass)["__init__"]).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
    return names


def _rows(page: Path) -> dict[str, tuple[str, bool]]:
    rows: dict[str, tuple[str, bool]] = {}
    for m in ROW.finditer(page.read_text()):
        assert m["name"] not in rows, f"{page.name}: {m['name']} documented twice"
        rows[m["name"]] = (m["default"], m["templated"] == "yes")
    return rows


def _check_rows(cls: type[BaseOperator], page: Path, rows: dict[str, tuple[str, bool]]) -> None:
    params = _own_params(cls)
    templated = set(cls.template_fields)
    for name, (default, is_templated) in rows.items():
        assert name in params, f"{page.name}: {name} is not a parameter of {cls.__name__}"
        real = params[name].default
        expected = "required" if real is inspect.Parameter.empty else f"`{real!r}`"
        assert default == expected, f"{page.name}: {name} default says {default}, the code {expected}"
        assert is_templated == (name in templated), f"{page.name}: {name} templated={is_templated} is wrong"


CLASSES = _documented_classes()


def test_every_operator_and_sensor_module_has_classes() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"StreamingTransferOperator", "PerformanceCheckSensor", "EnsurePartitionsOperator"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_page_documents_every_parameter_with_its_default_and_templating(cls: type[BaseOperator]) -> None:
    page = DOCS / _page_name(cls)
    assert page.is_file(), f"{cls.__name__} has no how-to page {page.relative_to(REPO)}"
    text = page.read_text()
    assert text.startswith(f"# {cls.__name__}"), f"{page.name} must start with '# {cls.__name__}'"
    for section in SECTIONS:
        assert section in text, f"{page.name} lacks {section!r}"
    rows = _rows(page)
    missing = set(_own_params(cls)) - set(rows)
    assert not missing, f"{page.name} does not document {sorted(missing)}"
    _check_rows(cls, page, rows)
    # A templated field the page never calls templated would be a lie by omission.
    assert set(cls.template_fields) <= set(rows), f"{page.name}: template_fields {cls.template_fields}"


def test_export_page_documents_what_an_export_reads() -> None:
    page = DOCS / EXPORT_PAGE
    text = page.read_text()
    for section in SECTIONS:
        assert section in text, f"{page.name} lacks {section!r}"
    rows = _rows(page)
    assert set(_own_params(StreamingTransferOperator)) >= EXPORT_PARAMS, (
        "EXPORT_PARAMS names a stale parameter"
    )
    assert EXPORT_PARAMS - set(rows) == set(), f"{page.name} lacks {sorted(EXPORT_PARAMS - set(rows))}"
    _check_rows(StreamingTransferOperator, page, rows)


def _calls(page: Path) -> list[tuple[str, set[str]]]:
    """(class name, keyword names) of every documented class called in the page's python blocks."""
    names = {c.__name__ for c in CLASSES}
    found = []
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        for node in ast.walk(ast.parse(block)):
            if not isinstance(node, ast.Call):
                continue
            func: Any = node.func
            if isinstance(func, ast.Attribute) and func.attr == "partial":
                func = func.value
            if isinstance(func, ast.Name) and func.id in names:
                found.append((func.id, {k.arg for k in node.keywords if k.arg}))
    return found


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_examples_parse_and_pass_only_real_arguments(page: Path) -> None:
    by_name = {c.__name__: c for c in CLASSES}
    calls = _calls(page)
    if page.name != "README.md":
        assert len(calls) >= 2, f"{page.name}: wants a minimal and a realistic example"
    for name, keywords in calls:
        unknown = keywords - _all_params(by_name[name])
        assert not unknown, f"{page.name}: {name}(...) passes {sorted(unknown)}, which it does not take"


def test_index_links_every_page_and_readme_links_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/operators/README.md does not link {page.name}"
    assert "docs/operators/README.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_examples_build_their_operators(page: Path) -> None:
    """Each python block runs inside a DAG: the operators' parse-time checks accept every example."""
    from datetime import timedelta

    from airflow.sdk import DAG, Asset

    from etl_platform.notifications.performance import PerformanceAlertNotifier
    from order_transforms import clean_orders

    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
        namespace: dict[str, Any] = {c.__name__: c for c in CLASSES}
        namespace |= {
            "timedelta": timedelta,
            "PerformanceAlertNotifier": PerformanceAlertNotifier,
            "clean_orders": clean_orders,
            "ORDERS_CLEAN": Asset(
                name="orders_clean", uri="postgres://db:5432/warehouse/warehouse/orders_clean"
            ),
            "MONTH_SQL": "SELECT id, country FROM warehouse.orders_clean",
        }
        with DAG(dag_id=f"docs_{page.stem.replace('-', '_')}_{i}", schedule=None) as dag:
            exec(compile(block, f"{page.name} block {i}", "exec"), namespace)
        assert dag.task_dict, f"{page.name} block {i} builds no task"

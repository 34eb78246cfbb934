"""Templated fields reach Airflow unchanged: each operator assigns them in ``__init__`` as given.

Airflow renders template fields in place before execute; an ``__init__`` that transforms one (``or
None``, ``str()``, a conditional) breaks Airflow's own check and renders something else than the DAG
author wrote. Normalising and validating rendered values is execute's job.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest


class Given(str):
    """A string that is its own object: any conversion (str(), slicing, ``or``-chains) loses it."""


def _transfer(**kwargs: Any) -> Any:
    from etl_platform.operators.transfer import StreamingTransferOperator

    base = {"source_conn_id": "s", "destination_conn_id": "d", "source_table": "shop.orders",
            "destination_table": "warehouse.orders"}  # fmt: skip
    return StreamingTransferOperator(task_id="t", **{**base, **kwargs})


def _key_ranges(**kwargs: Any) -> Any:
    from etl_platform.operators.key_ranges import KeyRangePlanOperator

    return KeyRangePlanOperator(task_id="t", **{"source_conn_id": "s", "source_table": "a.b", **kwargs})


def _analyze(**kwargs: Any) -> Any:
    from etl_platform.operators.analyze import AnalyzeTableOperator

    return AnalyzeTableOperator(task_id="t", **{"postgres_conn_id": "p", "table": "a.b", **kwargs})


def _notify(**kwargs: Any) -> Any:
    from etl_platform.operators.notify import RunSummaryOperator

    return RunSummaryOperator(task_id="t", **{"transfer_task_ids": ["load"], **kwargs})


def _ledger(**kwargs: Any) -> Any:
    from etl_platform.operators.ledger import EnsureLedgerSchemaOperator

    return EnsureLedgerSchemaOperator(task_id="t", **{"postgres_conn_id": "p", **kwargs})


BUILDERS = {"transfer": _transfer, "key_ranges": _key_ranges, "analyze": _analyze, "notify": _notify,
            "ledger": _ledger}  # fmt: skip

# What else a field needs to make a valid operator (the transfer's sides, the window's column).
COMPANIONS: dict[str, dict[str, Any]] = {
    "source_sql": {"source_table": None, "key_column": "id"},
    "source_path": {"source_table": None},
    "reject_path": {"source_table": None, "source_path": "/tmp/in.csv"},
    "destination_path": {"destination_table": None},
    "window_start": {"incremental_column": "updated_at"},
    "window_end": {"incremental_column": "updated_at"},
}

LITERALS = {"source_sql": "SELECT * FROM shop.orders", "source_path": "/tmp/in.parquet",
            "reject_path": "/tmp/rejects.csv", "destination_path": "/tmp/out/", "window_start": "2026-01-01",
            "window_end": "2026-01-02", "key_min": "100", "key_max": "200", "webhook_url": "http://hook"}  # fmt: skip


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for kind, build in BUILDERS.items():
        op = build()
        for field in op.template_fields:
            cases += [(kind, field, "jinja"), (kind, field, "literal")]
    return cases


@pytest.mark.parametrize(("kind", "field", "form"), _cases())
def test_each_templated_field_is_the_object_passed_in(kind: str, field: str, form: str) -> None:
    value = Given("{{ params.value }}" if form == "jinja" else LITERALS.get(field, "shop.value"))
    kwargs = {**COMPANIONS.get(field, {}), field: value}
    op = BUILDERS[kind](**kwargs)
    for name in op.template_fields:
        if name in kwargs:
            assert getattr(op, name) is kwargs[name], f"{kind}.{name} was changed in __init__"


def test_a_list_of_source_paths_is_kept_as_given() -> None:
    paths = ["/tmp/a.parquet", "/tmp/b.parquet"]
    assert _transfer(source_table=None, source_path=paths).source_path is paths


def test_every_templated_field_of_the_transfer_is_covered() -> None:
    fields = {field for kind, field, _ in _cases() if kind == "transfer"}
    assert fields == set(_transfer().template_fields)
    assert {kind for kind, _, _ in _cases()} == {"transfer", "key_ranges", "analyze", "notify"}


def test_every_transfer_keyword_lands_on_the_operator_under_its_name() -> None:
    """No argument is lost: each keyword is a template field or one of the kept SETTINGS."""
    from etl_platform.operators.transfer import StreamingTransferOperator
    from etl_platform.operators.transfer_settings import SETTINGS

    keywords = set(inspect.signature(StreamingTransferOperator.__init__).parameters) - {"self", "kwargs"}
    assert keywords == set(SETTINGS) | set(StreamingTransferOperator.template_fields)
    assert not set(SETTINGS) & set(StreamingTransferOperator.template_fields)
    given = {"source_format": "csv", "csv_options": {"delimiter": ";"}, "max_rejects": 3, "allow_empty": False,
             "zero_dates": "null", "chunk_rows": 10, "write_mode": "upsert", "transform_format": "arrow",
             "parallelism": 2, "checkpoint_schema": "cp", "strategy": "staged", "lock_timeout": "2s",
             "reset_checkpoint": True, "ledger_conn_id": "ledger"}  # fmt: skip
    op = _transfer(**given)
    for name, value in given.items():
        assert getattr(op, name) is value, name
    assert _transfer(conflict_columns=["id"]).conflict_columns == ("id",)


def test_the_default_window_is_a_template_until_rendered_and_unused_without_incremental_column() -> None:
    from etl_platform.operators import transfer_settings

    whole_table = _transfer()
    assert whole_table.window_start == "{{ data_interval_start }}"  # assigned as the signature gives it
    assert transfer_settings.window(whole_table) == (None, None)
    given = Given("2026-01-01")
    assert _transfer(window_start=given).window_start is given  # kept, though unused without the column
    incremental = _transfer(incremental_column="ts", window_start="2026-01-01", window_end="2026-01-02")
    assert transfer_settings.window(incremental) == ("2026-01-01", "2026-01-02")


def test_a_literal_window_is_still_checked_at_parse_time() -> None:
    with pytest.raises(ValueError, match="the window is empty"):
        _transfer(incremental_column="ts", window_start="2026-01-01", window_end="2026-01-01")


def test_a_mapped_transfer_without_a_window_renders_without_a_data_interval() -> None:
    """Mapped tasks render on the unmapped copy (Airflow's _do_render_template_fields): no window either."""
    from types import SimpleNamespace

    from airflow.sdk import DAG
    from jinja2 import UndefinedError

    from etl_platform.operators.transfer import StreamingTransferOperator
    from tests.transfer_fixtures import MINIMAL_TRANSFER

    common = MINIMAL_TRANSFER
    with DAG("transfer_mapped_render_check", schedule=None) as dag:
        whole = StreamingTransferOperator.partial(task_id="whole", **common).expand_kwargs(
            [{"key_min": "1", "key_max": "2"}]
        )
        incremental = StreamingTransferOperator.partial(
            task_id="incremental", incremental_column="ts", **common
        ).expand_kwargs([{"key_min": "1", "key_max": "2"}])

    def context(task: Any) -> dict[str, Any]:
        ti = SimpleNamespace(map_index=0, task=task)
        return {
            "ds": None,
            "params": {},
            "ti": ti,
            "run_id": "r",
            "dag": dag,
            "dag_run": SimpleNamespace(conf={}),
        }

    rendered = context(whole)
    whole.render_template_fields(rendered)
    unmapped = rendered["task"]
    assert (unmapped.window_start, unmapped.window_end, unmapped.key_min, unmapped.key_max) == (
        None,
        None,
        "1",
        "2",
    )
    with pytest.raises(UndefinedError, match="data_interval_start"):
        incremental.render_template_fields(context(incremental))

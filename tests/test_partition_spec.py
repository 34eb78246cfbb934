"""The frozen per-operation specs of partition maintenance (etl_platform.partitions.spec): each check
once, on construction; and the operators build them at parse time without checking templated values."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date

import psycopg
import pytest

from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Interval
from etl_platform.partitions.spec import DrainSpec, EnsureSpec, IndexSpec, RetentionSpec, RunnerSpec
from harness import SchemaDb


def test_runner_spec_checks_the_ddl_settings_and_builds_the_runner(dst_db: SchemaDb) -> None:
    spec = RunnerSpec(" 250ms ", 3, 0.1, dry_run=True)
    assert spec.lock_timeout == "250ms"
    with psycopg.connect(dst_db.conninfo) as conn:
        runner = spec.runner(conn, logging.getLogger("test"))
        assert (
            runner.conn,
            runner.lock_timeout,
            runner.attempts,
            runner.backoff_seconds,
            runner.dry_run,
        ) == (
            conn,
            "250ms",
            3,
            0.1,
            True,
        )
    with pytest.raises(PartitionConfigError, match=r"^lock_timeout '2 parsecs' is not a positive"):
        RunnerSpec("2 parsecs")
    with pytest.raises(PartitionConfigError, match=r"^max_attempts must be at least 1, got 0\."):
        RunnerSpec(max_attempts=0)
    with pytest.raises(PartitionConfigError, match=r"^max_attempts must be at least 1, got '3'\."):
        RunnerSpec(max_attempts="3")  # type: ignore[arg-type]
    with pytest.raises(PartitionConfigError, match=r"^retry_backoff_seconds must be a number >= 0, got -1"):
        RunnerSpec(retry_backoff_seconds=-1)


def test_specs_are_frozen() -> None:
    spec = EnsureSpec("s.t", "month")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.premake = 9  # type: ignore[misc]


def test_ensure_spec_parses_the_interval_and_reads_an_empty_rendered_start_as_none() -> None:
    spec = EnsureSpec("s.t", "Month", start="", premake=0)
    assert spec.iv == Interval("month") and spec.interval == "Month"  # the user's value, for messages
    assert spec.start is None
    assert EnsureSpec("s.t", 1000, start=0).start == 0  # 0 is a real integer start
    assert EnsureSpec("s.t", "day", start=date(2026, 1, 1)).start == date(2026, 1, 1)
    with pytest.raises(PartitionConfigError, match=r"^premake must be a non-negative integer, got -1\."):
        EnsureSpec("s.t", "month", premake=-1)
    with pytest.raises(PartitionConfigError, match=r"^interval 'fortnight' is not one of"):
        EnsureSpec("s.t", "fortnight")


def test_drain_spec_parses_the_interval() -> None:
    assert DrainSpec("s.t", "7").iv == Interval("int", 7)
    with pytest.raises(PartitionConfigError, match=r"^interval 0: an integer interval must be positive"):
        DrainSpec("s.t", 0)


def test_retention_spec_checks_the_mode_only() -> None:
    assert (
        RetentionSpec("s.t", "{{ params.keep }}", mode="drop").mode == "drop"
    )  # retention: read with the table
    with pytest.raises(PartitionConfigError, match=r"^mode 'purge' is not one of .*retention mode 'purge'"):
        RetentionSpec("s.t", "1 year", mode="purge")


def test_index_spec_checks_columns_method_and_name_room() -> None:
    spec = IndexSpec("s.t", "i" * 52, ["a", "b"])  # type: ignore[arg-type]
    assert spec.columns == ("a", "b")
    with pytest.raises(PartitionConfigError, match=r"^columns must name at least one column to index\."):
        IndexSpec("s.t", "i", ())
    with pytest.raises(PartitionConfigError, match=r"^index method 'btree2' is not one of btree, hash"):
        IndexSpec("s.t", "i", ("a",), method="btree2")
    with pytest.raises(PartitionConfigError, match=r"^index_name 'i{53}' is 53 bytes; at most 52"):
        IndexSpec("s.t", "i" * 53, ("a",))


@pytest.mark.airflow
def test_operators_check_literals_at_parse_time_and_templates_when_rendered() -> None:
    from airflow.sdk import DAG

    from etl_platform.operators.partitions import CreatePartitionedIndexOperator, EnsurePartitionsOperator

    common = {"postgres_conn_id": "etl_test_dst", "table": "{{ params.table }}"}
    long_template = "{{ params.index_name }}" + " " * 60  # over 52 bytes until rendered
    with DAG("partition_spec_parse_check", schedule=None):
        with pytest.raises(ValueError, match=r"^too_long: index_name 'i{60}' is 60 bytes"):
            CreatePartitionedIndexOperator(task_id="too_long", index_name="i" * 60, columns=["a"], **common)
        with pytest.raises(ValueError, match=r"^bad_method: index method 'btree2'"):
            CreatePartitionedIndexOperator(
                task_id="bad_method", index_name="i", columns=["a"], method="btree2", **common
            )
        templated = CreatePartitionedIndexOperator(
            task_id="templated", index_name=long_template, columns=["a"], **common
        )
        assert templated.index_name == long_template  # assigned unchanged, for Airflow to render
        with pytest.raises(PartitionConfigError, match="is 83 bytes"):
            templated.spec()  # what execute builds if the rendered name were still this long
        ensure = EnsurePartitionsOperator(task_id="ensure", start="{{ params.start }}", **common)
        assert ensure.start == "{{ params.start }}" and ensure.spec().start == "{{ params.start }}"

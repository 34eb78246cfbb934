"""cProfile of execute: the operator option and the ETL_PROFILE switch, through a real dag.test() run."""

from __future__ import annotations

import re
from typing import Any

import pytest

from etl_platform.profiling import ENV_SWITCH, TOP_FUNCTIONS, profiling_requested
from harness import run_dag, task_outcomes

REPORT = re.compile(r"cProfile of profiling_switches\.(\w+), top (\d+) functions by cumulative time")


@pytest.mark.parametrize(
    ("option", "switch", "expected"),
    [
        (True, "", True),
        (False, "", False),
        (False, "0", False),
        (False, "1", True),
        (False, "load_*", True),
        (False, "etl_orders.load_orders", True),
        (False, "other_dag.load_orders", False),
        (False, "extract_*, transform_*", False),
    ],
)
def test_switch_matches_task_ids_and_dag_qualified_globs(
    monkeypatch: pytest.MonkeyPatch, option: bool, switch: str, expected: bool
) -> None:
    monkeypatch.setenv(ENV_SWITCH, switch)
    assert profiling_requested(option, "etl_orders", "load_orders") is expected


@pytest.mark.airflow
def test_option_and_env_switch_log_the_top_functions(
    dst_db: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with dst_db.connect() as conn:
        conn.execute("CREATE TABLE profiled (id int PRIMARY KEY)")
    monkeypatch.setenv(ENV_SWITCH, "profiling_switches.by_env_*")
    run = run_dag(
        "profiling_switches",
        conf={"table": f"{dst_db.schema}.profiled"},
        conn_env={"etl_test_dst": dst_db.uri()},
    )
    assert {task: ti.state for task, ti in task_outcomes(run).items()} == dict.fromkeys(
        ("by_option", "by_env_switch", "not_profiled"), "success"
    )
    reports = _reports(capfd.readouterr().out)  # task logs go to stdout through structlog
    assert set(reports) == {"by_option", "by_env_switch"}
    for task_id, report in reports.items():
        assert f"top {TOP_FUNCTIONS} functions" in report[0], task_id
        table = "\n".join(report)
        assert "Ordered by: cumulative time" in table and "ncalls" in table
        assert re.search(r"analyze\.py:\d+\(execute\)", table), table  # the operator's own execute
        listed = [line for line in report if re.match(r"\s+\d+(/\d+)?\s+\d", line)]
        assert 1 <= len(listed) <= TOP_FUNCTIONS, task_id


def _reports(out: str) -> dict[str, list[str]]:
    """Each report's header line and the pstats lines after it, up to the next log line."""
    reports: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if m := REPORT.search(line):
            current = reports[m.group(1)] = [line]
        elif re.match(r"\d{4}-\d\d-\d\dT", line):
            current = None
        elif current is not None:
            current.append(line)
    return reports

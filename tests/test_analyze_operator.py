"""AnalyzeTableOperator through dag.test(): statistics refreshed; a table that is not there fails at once."""

from __future__ import annotations

from typing import Any

import pytest

from harness import run_dag, task_outcomes

pytestmark = pytest.mark.airflow


def _run(dst_db: Any, table: str) -> Any:
    return run_dag("analyze_table", conf={"table": table}, conn_env={"etl_test_dst": dst_db.uri()})


def test_analyze_refreshes_the_tables_statistics(dst_db: Any) -> None:
    with dst_db.connect() as conn:
        conn.execute("CREATE TABLE analyzed (id int PRIMARY KEY)")
        conn.execute("INSERT INTO analyzed SELECT generate_series(1, 500)")
    outcome = task_outcomes(_run(dst_db, f"{dst_db.schema}.analyzed"))["analyze"]
    assert (outcome.state, outcome.try_number) == ("success", 1)
    with dst_db.connect() as conn:
        (reltuples,) = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"{dst_db.schema}.analyzed",)
        ).fetchone()
    assert reltuples == 500


def test_a_missing_table_fails_without_retries_naming_it(
    dst_db: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    outcome = task_outcomes(_run(dst_db, f"{dst_db.schema}.no_such_table"))["analyze"]
    assert (outcome.state, outcome.try_number) == ("failed", 1)  # retries=2: no retry can create it
    assert "no_such_table" in "".join(capfd.readouterr())

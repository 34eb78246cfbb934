"""DAGs for tests/test_lineage.py that the other test DAG files do not already give.

`lineage_broken` succeeds at moving rows but leaves a bad attribute behind, so building its OpenLineage
facets raises: the task must still succeed, the error logged once and counted in StatsD.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Context

from etl_platform.operators.transfer import StreamingTransferOperator


class BrokenLineageTransfer(StreamingTransferOperator):
    """A transfer whose recorded run is garbage by the time lineage is read."""

    def execute(self, context: Context) -> dict[str, Any]:
        summary = super().execute(context)
        self._lineage_run = "not a recorded run"  # type: ignore[assignment]
        return summary


with DAG(
    dag_id="lineage_broken",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    params={"source_table": "", "destination_table": ""},
    tags=["test"],
):
    BrokenLineageTransfer(
        task_id="transfer",
        source_conn_id="etl_test_src",
        destination_conn_id="etl_test_dst",
        source_table="{{ params.source_table }}",
        destination_table="{{ params.destination_table }}",
        chunk_rows=500,
    )

"""RunSummaryOperator: tells people what a load did (log, StatsD, optional webhook)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from etl_platform.notifications.webhook import post_json
from etl_platform.profiling import ProfiledExecute


class RunSummaryOperator(ProfiledExecute, BaseOperator):
    """Summarise the XCom summaries of ``transfer_task_ids`` and post them to ``webhook_url`` (optional).

    A failing webhook is logged, never raised: the load already happened.
    """

    template_fields: Sequence[str] = ("webhook_url",)

    def __init__(
        self,
        *,
        transfer_task_ids: Sequence[str],
        webhook_url: str | None = None,
        timeout: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transfer_task_ids = list(transfer_task_ids)
        self.webhook_url = webhook_url
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        summaries = []
        for task_id in self.transfer_task_ids:
            pulled = ti.xcom_pull(task_ids=task_id)
            summaries.extend(pulled if isinstance(pulled, list) else [pulled] if pulled else [])
        summaries = [s for s in summaries if isinstance(s, dict)]
        total = {
            "dag_id": ti.dag_id,
            "run_id": context["run_id"],
            "transfers": len(summaries),
            "rows": sum(s.get("rows", 0) for s in summaries),
            "bytes": sum(s.get("bytes", 0) for s in summaries),
            "seconds": max((s.get("seconds", 0.0) for s in summaries), default=0.0),
            "peak_rss_mb": max((s.get("peak_rss_mb", 0.0) for s in summaries), default=0.0),
        }
        self.log.info("run summary: %s", total)
        if self.webhook_url:
            post_json(self.webhook_url, total, self.timeout)
        return total

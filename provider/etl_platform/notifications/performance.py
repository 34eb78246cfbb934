"""PerformanceAlertNotifier: health alerts to the log, StatsD and, optionally, a webhook (JSON POST)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from etl_platform.health.config import Level
from etl_platform.notifications.webhook import post_json

log = logging.getLogger(__name__)


class PerformanceAlertNotifier(BaseNotifier):
    """Send a platform-health alert.

    The sensor calls :meth:`send` with its readings. In a callback
    (``on_failure_callback=PerformanceAlertNotifier(webhook_url=...)``) it sends ``message`` at
    ``level`` with the failing task's identity.

    :param webhook_url: optional URL that receives a JSON POST: level, message, dag_id, task_id,
        run_id and readings (templated).
    :param level: level used when called as a callback.
    :param message: text used when called as a callback (templated).
    :param timeout: seconds to wait for the webhook; a failing webhook is logged, never raised.
    """

    template_fields: Sequence[str] = ("webhook_url", "message")

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        level: Level = "critical",
        message: str = "platform health alert",
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.webhook_url = webhook_url
        self.level = level
        self.message = message
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        self.send(self.level, self.message, [], context)

    def send(
        self, level: Level, message: str, readings: list[dict[str, Any]], context: Any | None = None
    ) -> bool:
        """Log, count and post one alert; returns whether the webhook (if any) accepted it."""
        from airflow.sdk.observability.stats import Stats

        ti = (context or {}).get("ti")
        body = {
            "level": level,
            "message": message,
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": getattr(ti, "task_id", None),
            "run_id": (context or {}).get("run_id"),
            "readings": readings,
        }
        emit = log.error if level == "critical" else log.warning
        emit("platform health %s: %s", level, message)
        Stats.incr("etl.health.alerts", tags={"level": level})
        if not self.webhook_url:
            return True
        return post_json(self.webhook_url, body, self.timeout)

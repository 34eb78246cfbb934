"""What the sensor and the snapshot operator share: their source and threshold arguments, the spec
built from them (checked when the DAG is parsed), metric tags, and alerting through the notifier."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from etl_platform.common.errors import ConfigError
from etl_platform.health.config import HealthConfig, Level, OnUnavailable, queue_names
from etl_platform.notifications.performance import PerformanceAlertNotifier


class HealthTaskBase(BaseOperator):
    """Base of the health tasks; a subclass says which checks it runs (`_checks`).

    A BaseOperator subclass, not a plain mixin, so ``default_args`` and ``partial``/``expand`` see
    these arguments as they see the subclass's own. ``queues`` is templated: it is kept as given and
    normalised when the spec is built.
    """

    template_fields: Sequence[str] = ("queues",)

    def __init__(
        self,
        *,
        postgres_conn_id: str | None = None,
        pgbouncer_conn_id: str | None = None,
        redis_conn_id: str | None = None,
        queues: str | Sequence[str] = (),
        thresholds: dict[str, Any] | None = None,
        on_unavailable: dict[str, OnUnavailable] | None = None,
        check_timeout: float = 5.0,
        notifier: PerformanceAlertNotifier | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.pgbouncer_conn_id = pgbouncer_conn_id
        self.redis_conn_id = redis_conn_id
        self.queues = queues
        self.thresholds = thresholds or {}
        self.on_unavailable = on_unavailable or {}
        self.check_timeout = check_timeout
        self.notifier = notifier or PerformanceAlertNotifier()

    def _checks(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _config(self) -> HealthConfig:
        """The spec of this task's checks; ``queues`` as rendered (or, at parse time, as written)."""
        return HealthConfig(
            postgres_conn_id=self.postgres_conn_id,
            pgbouncer_conn_id=self.pgbouncer_conn_id,
            redis_conn_id=self.redis_conn_id,
            queues=queue_names(self.queues),
            checks=self._checks(),
            thresholds=self.thresholds,
            on_unavailable=self.on_unavailable,
            check_timeout=self.check_timeout,
        )

    def _check_at_parse(self) -> None:
        """Nonsense settings are refused when the DAG is parsed, naming the task and the setting."""
        try:
            self._config()
        except ConfigError as exc:
            raise ConfigError(f"{self.task_id}: {exc}") from None

    def _tags(self, context: Context) -> dict[str, str]:
        return {"dag_id": context["ti"].dag_id, "task_id": context["ti"].task_id}

    def _alert(self, level: Level, message: str, readings: list[dict[str, Any]], context: Context) -> None:
        notifier = copy.copy(self.notifier)  # rendered per task run; the DAG's copy stays a template
        notifier.render_template_fields(context)
        notifier.send(level, message, readings, context)

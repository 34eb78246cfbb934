"""What a health check reads and where its thresholds lie: one frozen spec, validated when the DAG is parsed.

The sensor, the snapshot operator, the trigger (from its serialized form) and the CLI all build this
spec, so every setting is checked once, here; a bad one raises ConfigError naming it.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from etl_platform.common.errors import ConfigError

Level = Literal["ok", "warning", "critical"]
LEVELS: tuple[Level, ...] = get_args(Level)  # in rising order
# A reading's level; "unavailable" is a check whose source could not be read (on_unavailable="fail").
ReadingLevel = Level | Literal["unavailable"]
OnUnavailable = Literal["fail", "warn", "ignore"]
ON_UNAVAILABLE: tuple[OnUnavailable, ...] = get_args(OnUnavailable)

METRICS: dict[str, tuple[float, float]] = {
    # metric: (warning, critical), the original platform design's levels
    "avg_response_time": (2.0, 5.0),  # seconds
    "db_connections": (80.0, 95.0),  # % of usable connections
    "memory_usage_percent": (75.0, 90.0),
    "queue_length": (100.0, 500.0),  # Celery messages waiting
    "pgbouncer_clients_waiting": (1.0, 20.0),  # read when a PgBouncer connection is given
    "pgbouncer_max_wait": (1.0, 5.0),  # seconds
}
PERCENT_METRICS = ("db_connections", "memory_usage_percent")
CHECKS = ("db_connections", "avg_response_time", "memory_usage_percent", "queue_length")
# PgBouncer is not a check (it rides along when pgbouncer_conn_id is set) but is a source that can be
# down like one, so on_unavailable may name it too.
UNAVAILABLE_KEYS = (*CHECKS, "pgbouncer")
PG_CHECKS = frozenset({"db_connections", "avg_response_time"})  # the checks that read postgres_conn_id


def default_checks(queues: str | Iterable[str] | None) -> tuple[str, ...]:
    """The sensor's and the CLI's checks when none are named: all, queue_length only with queues."""
    return tuple(c for c in CHECKS if c != "queue_length" or queues)


def snapshot_checks(postgres_conn_id: str | None, queues: tuple[str, ...]) -> tuple[str, ...]:
    """The snapshot operator's checks: memory always, the rest where their source is given."""
    checks = ["memory_usage_percent"]
    if postgres_conn_id:
        checks += ["db_connections", "avg_response_time"]
    if queues:
        checks.append("queue_length")
    return tuple(checks)


def queue_names(queues: str | Iterable[str] | None) -> tuple[str, ...]:
    """Queue names from a list, a comma-separated string, or a rendered list literal ("['a', 'b']").

    A templated ``queues`` renders to a string; iterating it would give one "queue" per character.
    """
    if queues is None:
        return ()
    if isinstance(queues, str):
        text = queues.strip()
        if text.startswith(("[", "(")):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, list | tuple):
                return tuple(str(q).strip() for q in parsed if str(q).strip())
        return tuple(q.strip() for q in text.split(",") if q.strip())
    return tuple(str(q).strip() for q in queues if str(q).strip())


@dataclass(frozen=True)
class HealthConfig:
    """Serializable (it travels to the triggerer): connection ids, never connection secrets."""

    postgres_conn_id: str | None = None
    pgbouncer_conn_id: str | None = None
    redis_conn_id: str | None = None  # default: the Celery broker from Airflow's [celery] broker_url
    queues: tuple[str, ...] = ()
    checks: tuple[str, ...] = CHECKS
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)
    on_unavailable: dict[str, OnUnavailable] = field(default_factory=dict)
    check_timeout: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", queue_names(self.queues))
        object.__setattr__(self, "checks", tuple(self.checks))
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ConfigError(f"checks {unknown} are unknown; choose from {list(CHECKS)}.")
        merged = dict(METRICS)
        for metric, levels in (self.thresholds or {}).items():
            merged[metric] = _levels(metric, levels)
        object.__setattr__(self, "thresholds", merged)
        self._check_on_unavailable()
        if "queue_length" in self.checks and not self.queues:
            raise ConfigError("the queue_length check needs `queues` (the Celery queue names to watch).")
        needs_pg = PG_CHECKS & set(self.checks)
        if needs_pg and not self.postgres_conn_id:
            raise ConfigError(f"checks {sorted(needs_pg)} need postgres_conn_id.")
        if not _is_number(self.check_timeout) or self.check_timeout <= 0:
            raise ConfigError(
                f"check_timeout must be a positive number of seconds, got {self.check_timeout!r}."
            )

    def _check_on_unavailable(self) -> None:
        for check, behaviour in (self.on_unavailable or {}).items():
            if check not in UNAVAILABLE_KEYS:
                raise ConfigError(
                    f"on_unavailable names an unknown check {check!r}; choose from {list(UNAVAILABLE_KEYS)}."
                )
            if behaviour not in ON_UNAVAILABLE:
                raise ConfigError(
                    f"on_unavailable[{check!r}] = {behaviour!r}; choose from {list(ON_UNAVAILABLE)}."
                )
        if "pgbouncer" in (self.on_unavailable or {}) and not self.pgbouncer_conn_id:
            raise ConfigError("on_unavailable['pgbouncer'] is set but there is no pgbouncer_conn_id.")

    def needs(self, source: str) -> bool:
        """Whether a check reads `source` ("postgres", "pgbouncer", "redis")."""
        if source == "postgres":
            return bool(PG_CHECKS & set(self.checks))
        if source == "redis":
            return "queue_length" in self.checks
        return bool(self.pgbouncer_conn_id)

    def behaviour(self, check: str) -> OnUnavailable:
        return (self.on_unavailable or {}).get(check, "warn")  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = list(self.queues)
        data["checks"] = list(self.checks)
        data["thresholds"] = {k: list(v) for k, v in self.thresholds.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthConfig:
        return cls(**{**data, "thresholds": {k: tuple(v) for k, v in data.get("thresholds", {}).items()}})


def _is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _levels(metric: str, levels: Any) -> tuple[float, float]:
    """(warning, critical) of one metric's thresholds, from a dict or a pair; ConfigError naming it."""
    if metric not in METRICS:
        raise ConfigError(f"thresholds name an unknown metric {metric!r}; choose from {list(METRICS)}.")
    if isinstance(levels, dict):
        unknown = set(levels) - {"warning", "critical"}
        if unknown:
            raise ConfigError(
                f"thresholds[{metric!r}] has unknown keys {sorted(unknown)}; use warning and critical."
            )
        warning, critical = (
            levels.get("warning", METRICS[metric][0]),
            levels.get("critical", METRICS[metric][1]),
        )
    else:
        try:
            warning, critical = levels
        except (TypeError, ValueError):
            raise ConfigError(
                f"thresholds[{metric!r}] must be {{'warning': w, 'critical': c}} or (w, c), got {levels!r}."
            ) from None
    for name, value in (("warning", warning), ("critical", critical)):
        if not _is_number(value) or value < 0:
            raise ConfigError(
                f"thresholds[{metric!r}].{name} must be a finite non-negative number, got {value!r}."
            )
        if metric in PERCENT_METRICS and value > 100:
            raise ConfigError(f"thresholds[{metric!r}].{name} is a percentage; {value!r} is above 100.")
    if warning > critical:
        raise ConfigError(f"thresholds[{metric!r}]: warning {warning} is above critical {critical}.")
    return float(warning), float(critical)

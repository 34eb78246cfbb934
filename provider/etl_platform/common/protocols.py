"""What the engines need from a logger, a metrics client and a config (Airflow's or the standard library's)."""

from __future__ import annotations

from typing import Any, Protocol


class LoggerLike(Protocol):
    """A stdlib logger or Airflow's structlog task logger."""

    def info(self, event: Any, /, *args: Any) -> Any: ...

    def warning(self, event: Any, /, *args: Any) -> Any: ...


class MetricsSink(Protocol):
    """What the engine needs from a StatsD client; the operator passes Airflow's Stats."""

    def incr(
        self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None
    ) -> None: ...

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None: ...


class ConfigReader(Protocol):
    """What an engine reads its settings from: Airflow's `conf` (or a ConfigParser), passed in by the
    Airflow-side caller so the engine itself imports no Airflow."""

    def get(self, section: str, key: str, *, fallback: Any = ...) -> Any: ...

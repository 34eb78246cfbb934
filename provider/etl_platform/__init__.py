"""etl-platform: fast, resumable PostgreSQL ETL for Apache Airflow 3."""

from __future__ import annotations

__all__ = ["__version__"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("airflow-provider-etl-platform")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

"""Optional parts of the distribution: a clear message naming the extra when one is missing.

A PostgreSQL-only install imports none of these; a DAG that reads MariaDB or S3 imports them when
its task runs (never at parse time), and learns which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from etl_platform.transfer.errors import TransferConfigError

DISTRIBUTION = "airflow-provider-etl-platform"


class MissingExtraError(TransferConfigError, ImportError):
    """An optional dependency is not installed; installing the named extra fixes it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the [{extra}] extra ({module} is not installed): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        ) from exc

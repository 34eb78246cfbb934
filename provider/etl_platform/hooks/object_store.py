"""fsspec filesystems for `file://` and `s3://` locations, through Airflow's ObjectStoragePath.

The transfer engine reads and writes files through plain fsspec; this is where an Airflow
connection (an `aws` connection for S3) turns into that filesystem.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from etl_platform.extras import require
from etl_platform.transfer.errors import SourceUnavailableError

_EXTRAS = {"s3": ("s3fs", "s3", "an s3:// location")}
PROBE_TIMEOUT_S = 5.0


def filesystem_for(url: str, conn_id: str | None) -> tuple[Any, str]:
    """The filesystem holding `url` and the path to give it ("bucket/key" on S3, a local path)."""
    from airflow.sdk import ObjectStoragePath

    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme == "file" and not conn_id:
        # Local files need no connection: fsspec's own local filesystem, without the 0.7 s Airflow's
        # object store spends registering every provider's filesystems on first use.
        import fsspec

        return fsspec.filesystem("file"), url.split("://", 1)[-1]
    if scheme in _EXTRAS:
        require(*_EXTRAS[scheme])
    location = ObjectStoragePath(url if "://" in url else f"file://{url}", conn_id=conn_id or None)
    fs = location.fs
    _check_endpoint(fs, conn_id)
    return fs, location.path


def _check_endpoint(fs: Any, conn_id: str | None) -> None:
    """An S3-compatible endpoint that does not answer fails at once, naming it: botocore and s3fs would
    otherwise retry a refused connection for seconds before saying the same."""
    endpoint = getattr(fs, "endpoint_url", None)
    if not endpoint:
        return  # AWS's own endpoints: let the client resolve and retry them as it does
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except socket.gaierror as exc:
        raise SourceUnavailableError(
            f"object store connection {conn_id!r}: endpoint {host}:{port} cannot be resolved ({exc})",
            retryable=False,
        ) from None
    except OSError as exc:
        raise SourceUnavailableError(
            f"object store connection {conn_id!r}: endpoint {host}:{port} does not answer ({exc})",
            retryable=True,
        ) from None

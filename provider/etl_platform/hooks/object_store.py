"""fsspec filesystems for `file://` and `s3://` locations, through Airflow's ObjectStoragePath.

The transfer engine reads and writes files through plain fsspec; this is where an Airflow
connection (an `aws` connection for S3) turns into that filesystem.
"""

from __future__ import annotations

from typing import Any

from etl_platform.extras import require

_EXTRAS = {"s3": ("s3fs", "s3", "an s3:// location")}


def filesystem_for(url: str, conn_id: str | None) -> tuple[Any, str]:
    """The filesystem holding `url` and the path to give it (no scheme for local files)."""
    from airflow.sdk import ObjectStoragePath

    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme in _EXTRAS:
        require(*_EXTRAS[scheme])
    location = ObjectStoragePath(url if "://" in url else f"file://{url}", conn_id=conn_id or None)
    return location.fs, location.path  # "bucket/key" on S3, an absolute path locally

"""An export's destination directory: temporary files, atomic publication, the resume manifest.

Files are written under `_tmp/` and moved to their final name once closed, so a final name never
shows half a file. A local rename is atomic; on S3 a move is a copy then a delete, and an object only
appears when its upload or copy is complete, so the same holds. Readers that list the directory
(pyarrow.dataset, Spark, Hive) skip names starting with "_" or ".".

The manifest `_etl_export_checkpoint.json` records the published files and the last key they hold;
it is itself written under `_tmp/` and moved into place.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

MANIFEST = "_etl_export_checkpoint.json"
SUCCESS = "_SUCCESS"
TMP_DIR = "_tmp"


class ExportDirectory:
    def __init__(self, fs: Any, root: str):
        self.fs = fs
        self.root = fs._strip_protocol(root).rstrip("/")

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def tmp_path(self, suffix: str) -> str:
        return self.path(f"{TMP_DIR}/{uuid.uuid4().hex}{suffix}")

    def open_tmp(self, suffix: str) -> tuple[str, Any]:
        tmp = self.tmp_path(suffix)
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        return tmp, self.fs.open(tmp, "wb")

    def publish(self, tmp: str, relative: str) -> int:
        """Moves a closed temporary file to its final name; returns its size in bytes."""
        final = self.path(relative)
        size = int(self.fs.size(tmp))
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        self.fs.mv(tmp, final)
        return size

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.fs.exists(self.path(MANIFEST)):
            return None
        with self.fs.open(self.path(MANIFEST), "rb") as handle:
            doc: dict[str, Any] = json.loads(handle.read())
        return doc

    def write_manifest(self, doc: dict[str, Any]) -> None:
        tmp, handle = self.open_tmp(".json")
        with handle:
            handle.write(json.dumps(doc, indent=1, sort_keys=True).encode())
        self.fs.mv(tmp, self.path(MANIFEST))

    def write_success(self) -> None:
        with self.fs.open(self.path(SUCCESS), "wb") as handle:
            handle.write(b"")

    def data_files(self) -> list[str]:
        """Files under the root other than markers, the manifest and temporary files (relative names)."""
        self.fs.invalidate_cache()  # s3fs caches listings; an earlier attempt may have changed the tree
        if not self.fs.exists(self.root):
            return []
        found = []
        for path in self.fs.find(self.root):
            relative = path[len(self.root) + 1 :]
            if not any(part.startswith(("_", ".")) for part in relative.split("/")):
                found.append(relative)
        return sorted(found)

    def remove(self, relatives: list[str]) -> None:
        for relative in relatives:
            self.fs.rm(self.path(relative))

    def clear_tmp(self) -> None:
        """Deletes what an interrupted attempt left half-written."""
        tmp = self.path(TMP_DIR)
        if self.fs.exists(tmp):
            self.fs.rm(tmp, recursive=True)

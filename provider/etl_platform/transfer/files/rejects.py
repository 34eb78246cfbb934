"""Bad CSV rows set aside in a reject file instead of failing the transfer, up to a cap.

The file is CSV with the columns file, line, column, error, record, written once at the end through a
temporary name and a rename, so a reader never sees half of it. A resumed transfer keeps the rows the
earlier attempt rejected (rows of the chunk that was in flight then are read again and not doubled);
a fresh transfer replaces an old reject file, so it never shows another run's rows.
"""

from __future__ import annotations

import io
import threading
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from etl_platform.transfer.files.locate import display

_COLUMNS = ("file", "line", "column", "error", "record")


class RejectSink:
    def __init__(self, fs: Any, path: str | None, max_rejects: int):
        self.fs = fs
        self.path = fs._strip_protocol(path) if path else None
        self.max_rejects = max_rejects
        self._rows: dict[tuple[str, str, str, str], tuple[str, str, str, str, str]] = {}
        self._lock = threading.Lock()
        self._dirty = False

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @property
    def count(self) -> int:
        return len(self._rows)

    def try_add(self, file: str, line: str, column: str, error: str, record: str) -> bool:
        """Sets the row aside; False when there is no reject file or the cap is reached."""
        if self.path is None:
            return False
        key = (file, line, column, record)  # a malformed row's line is approximate: its text tells it apart
        with self._lock:
            if key not in self._rows and len(self._rows) >= self.max_rejects:
                return False
            self._rows[key] = (file, line, column, error, record)
            self._dirty = True
            return True

    def keep_earlier(self) -> None:
        """On resume: start from the rows the interrupted attempt rejected."""
        if self.path is None or not self.fs.exists(self.path):
            return
        with self.fs.open(self.path, "rb") as handle:
            table = pacsv.read_csv(
                handle,
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(_COLUMNS, pa.string())),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
            )
        for row in table.to_pylist():
            values = tuple(str(row.get(c) or "") for c in _COLUMNS)
            self._rows[(values[0], values[1], values[2], values[4])] = values  # type: ignore[assignment]

    def replace_earlier(self) -> None:
        """On a fresh start: an old reject file is rewritten at the end (empty if nothing is rejected)."""
        if self.path is not None and self.fs.exists(self.path):
            self._dirty = True

    def flush(self) -> None:
        """Publishes the reject file (temporary name, then rename) if any row was added in this run."""
        if self.path is None or not self._dirty:
            return
        rows = sorted(self._rows.values(), key=lambda r: (r[0], int(r[1]) if r[1].isdigit() else 0, r[2]))
        table = pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(_COLUMNS)})
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        parent = self.path.rsplit("/", 1)[0] if "/" in self.path else ""
        name = self.path.rsplit("/", 1)[-1]
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.inprogress" if parent else f".{name}.inprogress"
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(tmp, "wb") as out:
            out.write(sink.getvalue())
        self.fs.mv(tmp, self.path)
        self._dirty = False

    def describe(self) -> str:
        return display(self.fs, self.path) if self.path else "(none)"

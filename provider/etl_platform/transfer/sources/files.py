"""Files (Parquet, CSV plain/gzip/zstd) on any fsspec filesystem as a transfer source.

One part per file, resumable inside it: a chunk is at most `chunk_rows` rows of a file and its
checkpoint is the position after it ("rg:3" in Parquet, "row:200000" in CSV). Every file's columns
are checked against the destination before any row is written. Chunks reach the engine as COPY data:
binary when every column has a binary form (files/pgbinary.py: PostgreSQL parses it with far less
work), PostgreSQL CSV otherwise and always for a transform, so every write mode works unchanged.

Files are independent, so they can load side by side: the engine runs up to `spec.parallelism`
streams (each with its own destination connection), taking the pending files in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from etl_platform.transfer.catalog import Relation
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.files import schema
from etl_platform.transfer.files.chunks import EncodedChunk, Encoding, Pipeline, RowStream
from etl_platform.transfer.files.csv_stream import CsvOptions, CsvStream
from etl_platform.transfer.files.locate import CSV, FORMATS, FoundFile, infer_format, locate
from etl_platform.transfer.files.parquet_stream import ParquetStream
from etl_platform.transfer.files.planning import (
    FileLayout,
    build_file_plan,
    csv_types,
    inspect,
    plan_destination,
)
from etl_platform.transfer.files.rejects import RejectSink
from etl_platform.transfer.plan import BINARY, TransferPlan
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.spec import TransferSpec, WriteMode

__all__ = ["CsvOptions", "FileSource"]

log = logging.getLogger(__name__)


class FileSource:
    """Rows from files. `fs` is an fsspec filesystem; each of `paths` a file, a directory/prefix
    (ending in "/") or a glob. The format comes from the name unless `file_format` is given.

    Bad CSV rows fail the transfer naming file, line and column, unless `reject_path` names a file to
    set them aside in (at most `max_rejects` rows). No matching file means 0 rows and a warning, or an
    error with allow_empty=False.
    """

    def __init__(
        self,
        fs: Any,
        paths: str | tuple[str, ...] | list[str],
        *,
        file_format: str | None = None,
        csv: CsvOptions | None = None,
        reject_path: str | None = None,
        max_rejects: int = 0,
        allow_empty: bool = True,
        label: str | None = None,
        logger: LoggerLike | None = None,
    ):
        self.fs = fs
        self.paths = (paths,) if isinstance(paths, str) else tuple(paths)
        if not self.paths:
            raise TransferConfigError("FileSource needs at least one path.")
        if file_format is not None and file_format not in FORMATS:
            raise TransferConfigError(f"file_format {file_format!r} is not one of {list(FORMATS)} (or None).")
        if not isinstance(max_rejects, int) or max_rejects < 0:
            raise TransferConfigError(f"max_rejects must be a non-negative integer, got {max_rejects!r}.")
        self.file_format = file_format
        self.csv = csv or CsvOptions()
        self.rejects = RejectSink(fs, reject_path, max_rejects)
        self.allow_empty = allow_empty
        self.label = label or self.paths[0]
        self._fixed_label = label is not None
        self.log: LoggerLike = logger or log
        self._layouts: dict[str, FileLayout] = {}
        self._targets: dict[str, schema.Target] = {}
        self._dest: Relation | None = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.rejects.flush()  # also after a failure: the rows set aside so far are worth seeing

    @property
    def consistency(self) -> str:
        return "files as listed at plan time"

    @property
    def files(self) -> list[str]:
        """The files this transfer reads, as located at plan time (the summary lists them)."""
        return sorted(self._layouts)

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, spec: TransferSpec, destination: psycopg.Connection[Any]) -> TransferPlan:
        if not spec.source_path:
            raise TransferConfigError(
                "a FileSource transfer needs spec.source_path (it identifies the checkpoint)."
            )
        if not self._fixed_label:
            self.label = spec.source_label
        found, empty = locate(self.fs, self.paths, self.file_format, self.csv.compression)
        for given in empty:
            self.log.warning("%s: no files match %s", self.label, given)
        dest, self._targets = plan_destination(spec, destination)
        self._dest = dest
        if not found:
            if not self.allow_empty:
                raise TransferConfigError(
                    f"no files match {', '.join(self.paths)} (allow_empty=False): nothing to load into {dest.label}."
                )
            emptied = (
                " (write_mode truncate: the table will be emptied)"
                if spec.write_mode is WriteMode.TRUNCATE
                else ""
            )
            self.log.warning("%s: no files to read; 0 rows for %s%s", self.label, dest.label, emptied)
        layouts = [inspect(self.fs, f, self.csv, dest, self._targets) for f in found]
        self._layouts = {layout.found.path: layout for layout in layouts}
        plan = build_file_plan(spec, destination, layouts, dest, self._targets)
        destination.commit()
        return plan

    def parts(self, plan: TransferPlan, parallelism: int) -> list[PartState]:
        return [PartState(part=i, lo=path, hi=None) for i, path in enumerate(sorted(self._layouts))]

    def estimate_rows(self, plan: TransferPlan) -> int:
        """Exact for Parquet (footers); CSV files count as unknown (0) until read."""
        return sum(layout.rows or 0 for layout in self._layouts.values())

    # -- reading ----------------------------------------------------------------------------------

    @contextmanager
    def readers(self, plan: TransferPlan, parts: list[PartState]) -> Iterator[list[FileChunkReader]]:
        if any(p.last_key is not None or p.done for p in parts):
            self.rejects.keep_earlier()
        else:
            self.rejects.replace_earlier()
        readers = [FileChunkReader(self, plan, part) for part in parts]
        try:
            yield readers
        finally:
            for reader in readers:
                reader.close()

    def open_stream(self, plan: TransferPlan, path: str, start: str | None) -> RowStream:
        layout = self._layouts.get(path) or self._inspect_later(path)
        found = layout.found
        if found.file_format == CSV:
            names = layout.names or [c.name for c in plan.source_columns]
            types = (
                {f.name: f.type for f in layout.fields} if layout.fields else csv_types(names, self._targets)
            )
            return CsvStream(
                self.fs, path, found.compression, layout.label, self.csv, names, types, self.rejects, start
            )
        return ParquetStream(self.fs, path, layout.label, start)

    def _inspect_later(self, path: str) -> FileLayout:
        """A file a resumed checkpoint names that the new listing did not (moved, or a changed glob)."""
        fmt, compression = infer_format(path)
        found = FoundFile(
            path, self.file_format or fmt or "parquet", self.csv.compression or compression, None
        )
        assert self._dest is not None, "plan() runs before any reader"
        return inspect(self.fs, found, self.csv, self._dest, self._targets)


class FileChunkReader:
    """Reads one file chunk by chunk; the next chunk is encoded while the engine writes this one."""

    def __init__(self, source: FileSource, plan: TransferPlan, part: PartState):
        assert part.lo is not None, "a file part names its file in lo"
        self.source = source
        self.plan = plan
        self.path = part.lo
        layout = source._layouts.get(self.path)
        self.encoding = Encoding(
            label=layout.label if layout else self.path,
            columns=tuple(c.name for c in plan.source_columns),
            spec=plan.spec,
            for_transform=plan.spec.transform is not None,
            binary_targets=(
                tuple(source._targets[c.name] for c in plan.source_columns)
                if plan.copy_format == BINARY
                else None
            ),
        )
        self._pipeline: Pipeline | None = None

    def read(self, lo: str | None, hi: str | None, limit: int) -> EncodedChunk:
        start = None if lo is None or lo == self.path else lo
        pipeline = self._pipeline
        if pipeline is None or pipeline.next_start != start or pipeline.limit != limit:
            self.close()
            pipeline = self._pipeline = Pipeline(
                lambda: self.source.open_stream(self.plan, self.path, start), self.encoding, limit, start
            )
        return pipeline.next()

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

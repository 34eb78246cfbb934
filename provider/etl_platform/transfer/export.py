"""PostgreSQL -> Parquet or CSV files on any fsspec filesystem, resumable and published atomically.

The source is read in keyset chunks on one snapshot, exactly as a transfer reads it (PostgresSource,
CSV COPY); the next chunk is read while this one is written. Files rotate every `rows_per_file` rows
(`part-00000.parquet`, ... per directory) and, with `partition_by`, go to Hive directories `col=value/`.

Resume: each commit publishes the closed files (temporary name, then a move) and records them and the
last key they hold in `_etl_export_checkpoint.json`. A rerun deletes temporary files and any published
file the manifest does not list (a commit cut short), then continues after the recorded key: no row is
written twice. When the export finishes, the manifest is marked finished and kept (a rerun of a
finished export does nothing and reports it) and `_SUCCESS` is written; consumers should wait for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa

from etl_platform.transfer.catalog import Relation
from etl_platform.transfer.checkpoint import PartState
from etl_platform.transfer.engine import peak_rss_mb
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.export_spec import ExportSpec
from etl_platform.transfer.files import export_types, schema
from etl_platform.transfer.files.export_types import ExportColumn
from etl_platform.transfer.files.export_writers import PartitionedFiles
from etl_platform.transfer.files.publish import ExportDirectory
from etl_platform.transfer.plan import CSV, TransferPlan, keyset_source
from etl_platform.transfer.prefetch import prefetch
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.session import ConnectionFactory
from etl_platform.transfer.sources.base import ChunkEnd
from etl_platform.transfer.sources.postgres import PgChunkReader, PostgresSource
from etl_platform.transfer.spec import TransferSpec

log = logging.getLogger(__name__)
MANIFEST_FORMAT = 1


@dataclass
class _State:
    """What the manifest records."""

    fingerprint: str
    last_key: str | None = None
    files: list[str] | None = None
    rows: int = 0
    bytes: int = 0
    next_index: dict[str, int] | None = None
    finished: bool = False

    def doc(self, source: str) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "fingerprint": self.fingerprint,
            "source": source,
            "last_key": self.last_key,
            "files": self.files or [],
            "rows": self.rows,
            "bytes": self.bytes,
            "next_index": self.next_index or {},
            "finished": self.finished,
            "updated_at": datetime.now(UTC).isoformat(),
        }


class ExportEngine:
    def __init__(
        self,
        spec: ExportSpec,
        source: ConnectionFactory,
        fs: Any,
        *,
        logger: LoggerLike | None = None,
        on_published: Callable[[str], None] | None = None,
    ):
        """`on_published(relative_name)` is called after each file is published (metrics, tests)."""
        self.spec = spec
        self.factory = source
        self.fs = fs
        self.log: LoggerLike = logger or log
        self.on_published = on_published
        self.directory = ExportDirectory(fs, spec.destination)

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        spec = self.spec
        with PostgresSource(self.factory, label=spec.source_label) as source:
            plan, columns = build_export_plan(spec, source.conn)
            source.conn.commit()
            state, resumed_from = self._start(plan, columns)
            rows_before, published_before = state.rows, len(state.files or [])
            if not state.finished:
                self._export(source, plan, columns, state)
        seconds = time.perf_counter() - started
        rows = state.rows - rows_before
        return {
            "rows": rows,
            "bytes": state.bytes,
            "files": list(state.files or []),
            "files_written": len(state.files or []) - published_before,
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds, 1) if seconds > 0 else 0.0,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "resumed_from": resumed_from,
            "destination": self.directory.root,
        }

    # -- resume -----------------------------------------------------------------------------------

    def _start(self, plan: TransferPlan, columns: list[ExportColumn]) -> tuple[_State, Any]:
        fingerprint = _fingerprint(self.spec, plan, columns)
        manifest = self.directory.read_manifest() if self.spec.checkpoint else None
        if manifest is not None and manifest.get("fingerprint") != fingerprint:
            raise TransferConfigError(
                f"{self.directory.root} holds an export with a different source, key, format, rotation or "
                "partitioning (its _etl_export_checkpoint.json says so): export into an empty directory, or "
                "delete that one."
            )
        if manifest is None:
            stray = self.directory.data_files()
            if stray:
                raise TransferConfigError(
                    f"{self.directory.root} is not empty ({len(stray)} files, e.g. {stray[0]}) and has no export "
                    "checkpoint: export into an empty directory."
                )
            self.directory.clear_tmp()
            state = _State(fingerprint, files=[], next_index={})
            if self.spec.checkpoint:  # before any file is published: a rerun then knows the directory is ours
                self.directory.write_manifest(state.doc(self.spec.source_label))
            return state, None
        state = _State(
            fingerprint,
            last_key=manifest.get("last_key"),
            files=list(manifest.get("files", [])),
            rows=int(manifest.get("rows", 0)),
            bytes=int(manifest.get("bytes", 0)),
            next_index={k: int(v) for k, v in manifest.get("next_index", {}).items()},
            finished=bool(manifest.get("finished")),
        )
        if state.finished:
            self.directory.write_success()  # in case the attempt stopped between the two
            self.log.info(
                "export to %s already finished: %d rows in %d files",
                self.directory.root,
                state.rows,
                len(state.files or []),
            )
            return state, "finished"
        self.directory.clear_tmp()
        listed = set(state.files or [])
        unlisted = [f for f in self.directory.data_files() if f not in listed]
        if unlisted:  # published by a commit that did not reach the manifest: its rows are read again
            self.log.info(
                "export to %s: removing %d files of an unfinished commit", self.directory.root, len(unlisted)
            )
            self.directory.remove(unlisted)
        if state.last_key is not None:
            self.log.info(
                "export to %s: resuming after %s = %s", self.directory.root, plan.key.name, state.last_key
            )
        return state, state.last_key

    # -- the loop ---------------------------------------------------------------------------------

    def _export(
        self, source: PostgresSource, plan: TransferPlan, columns: list[ExportColumn], state: _State
    ) -> None:
        spec = self.spec
        order = [c.name for c in plan.source_relation.columns] if plan.source_relation else None
        file_schema = _file_schema(columns, order)
        files = PartitionedFiles(
            self.directory,
            spec.format,
            file_schema,
            spec.rows_per_file,
            spec.partition_by,
            spec.max_open_files,
            state.next_index or {},
        )
        try:
            with source.readers(plan, [PartState(0, state.last_key, None)]) as readers:
                raw_chunks = prefetch(self._chunks(readers[0], plan, state.last_key), name="etl-export-read")
                parsed = prefetch(
                    (_parse(raw, end, columns) for raw, end in raw_chunks), name="etl-export-parse"
                )
                last_key = state.last_key
                with contextlib.closing(raw_chunks), contextlib.closing(parsed) as items:
                    for table, end in items:
                        if table is not None:
                            files.write(table)
                        state.rows += end.rows
                        last_key = end.last_key or last_key
                        if end.exhausted:
                            break
                        if files.closed:  # a file is full: publish it (and, partitioned, the open ones)
                            files.close_all()
                            self._commit(files, state, last_key)
                files.close_all()
                self._commit(files, state, last_key, finished=True)
        except BaseException:
            files.discard()
            raise
        self.directory.write_success()

    def _chunks(
        self, reader: PgChunkReader, plan: TransferPlan, lo: str | None
    ) -> Iterator[tuple[bytearray, ChunkEnd]]:
        """Reads chunk after chunk; unpartitioned, a file boundary always falls on a chunk boundary."""
        spec = self.spec
        readers: dict[int, PgChunkReader] = {}
        left_in_file = spec.rows_per_file
        while True:
            limit = spec.chunk_rows if spec.partition_by else min(spec.chunk_rows, left_in_file)
            if limit not in readers:
                sized = replace(plan, spec=replace(plan.spec, chunk_rows=limit))
                readers[limit] = PgChunkReader(reader.conn, sized)
            chunk = readers[limit].read(lo, None, limit)
            raw = bytearray()
            for block in chunk.blocks():
                raw += block
            end = chunk.end()
            yield raw, end
            if end.exhausted:
                return
            lo = end.last_key
            left_in_file -= end.rows
            if left_in_file <= 0:
                left_in_file = spec.rows_per_file

    def _commit(
        self, files: PartitionedFiles, state: _State, last_key: str | None, finished: bool = False
    ) -> None:
        """Publishes the closed files, then records them with the key they reach."""
        for closed in files.closed:
            if closed.rows:
                state.bytes += self.directory.publish(closed.tmp, closed.relative)
                assert state.files is not None
                state.files.append(closed.relative)
                if self.on_published is not None:
                    self.on_published(closed.relative)
            else:
                self.fs.rm(closed.tmp)
        files.closed.clear()
        state.last_key = last_key
        state.next_index = dict(files.next_index)
        state.finished = finished
        if self.spec.checkpoint:
            self.directory.write_manifest(state.doc(self.spec.source_label))


def build_export_plan(
    spec: ExportSpec, conn: psycopg.Connection[Any]
) -> tuple[TransferPlan, list[ExportColumn]]:
    """The keyset plan PostgresSource reads with (CSV COPY), and the Arrow type of each column."""
    source_from, source_relation, columns, key = keyset_source(
        conn, spec.source_table, spec.source_sql, spec.key_column
    )
    if spec.partition_by and all(c.name != spec.partition_by for c in columns):
        raise TransferConfigError(
            f"partition_by {spec.partition_by!r} is not a column of {spec.source_label} "
            f"(columns: {', '.join(c.name for c in columns)})."
        )
    ordered = (key, *[c for c in columns if c.name != key.name])
    transfer_spec = TransferSpec(
        destination_table=spec.destination,
        source_table=spec.source_table,
        source_sql=spec.source_sql,
        key_column=key.name,
        chunk_rows=spec.chunk_rows,
    )
    plan = TransferPlan(
        spec=transfer_spec,
        source_from=source_from,
        source_relation=source_relation,
        source_columns=ordered,
        key=key,
        destination=Relation(0, "export", spec.destination, "r", (), ()),
        dest_columns=(),
        copy_format=CSV,
        conflict_columns=(),
    )
    base = {name: target.base_oid for name, target in schema.targets(conn, ordered).items()}
    return plan, export_types.export_columns(ordered, base, binary=spec.file_format == "parquet")


def _file_schema(columns: list[ExportColumn], order: list[str] | None) -> pa.Schema:
    """The files' columns in the table's order (the key first for a query), all nullable."""
    by_name = {c.name: c for c in columns}
    names = order or [c.name for c in columns]
    return pa.schema([pa.field(n, by_name[n].arrow_type) for n in names])


def _fingerprint(spec: ExportSpec, plan: TransferPlan, columns: list[ExportColumn]) -> str:
    doc = {
        "source": spec.source_table or spec.source_sql,
        "key": plan.key.name,
        "format": [spec.format.kind, spec.format.compression],
        "rows_per_file": spec.rows_per_file,
        "partition_by": spec.partition_by,
        "columns": [[c.name, str(c.arrow_type)] for c in columns],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _parse(raw: bytearray, end: ChunkEnd, columns: list[ExportColumn]) -> tuple[pa.Table | None, ChunkEnd]:
    return (export_types.to_arrow(raw, columns) if end.rows else None), end


def run_export(spec: ExportSpec, source_dsn: str, fs: Any, **kwargs: Any) -> dict[str, Any]:
    """Standalone entry point: a libpq connection string instead of an Airflow connection."""
    return ExportEngine(spec, lambda: psycopg.connect(source_dsn), fs, **kwargs).run()


__all__ = ["ExportEngine", "ExportSpec", "run_export"]

"""The streaming transfer engine: chunks piped into COPY, each committed with its checkpoint.

The source (`sources/`) hands each chunk over as COPY data in the plan's format; pass-through
chunks are forwarded as they come, never decoded here.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import psycopg

from etl_platform.common.session import pin_settings
from etl_platform.transfer.checkpoint import CheckpointStore, PartState
from etl_platform.transfer.errors import StagingLostError, TransferError, chunk_rejected
from etl_platform.transfer.plan import TransferPlan, check_output_columns
from etl_platform.transfer.prefetch import prefetch
from etl_platform.transfer.progress import LoggerLike, MetricsSink, Progress
from etl_platform.transfer.session import ConnectionFactory, connect_pinned
from etl_platform.transfer.sources.base import BLOCK_SIZE, ChunkEnd, ChunkReader, Source, SourceChunk
from etl_platform.transfer.sources.postgres import PostgresSource
from etl_platform.transfer.spec import TransferSpec
from etl_platform.transfer.strategies import writer_for
from etl_platform.transfer.summary import ChunkResult, TransferSummary, peak_rss_mb, resume_point
from etl_platform.transfer.writers import ChunkWriter

T = TypeVar("T")
CHECKPOINT_RETENTION_DAYS = 30

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Another stream failed; this one stops after its current chunk."""


class TransferEngine:
    def __init__(
        self,
        spec: TransferSpec,
        source: Source | ConnectionFactory,
        destination: ConnectionFactory,
        *,
        metrics: MetricsSink | None = None,
        metric_tags: dict[str, str] | None = None,
        logger: LoggerLike | None = None,
        reset_checkpoint: bool = False,
    ):
        self.spec = spec
        # A bare connection factory is a PostgreSQL source (the engine's first and fastest path).
        self.source: Source = PostgresSource(source) if callable(source) else source
        self.destination = destination
        self.metrics = metrics
        self.metric_tags = metric_tags or {}
        self.log: LoggerLike = logger or log
        self.reset_checkpoint = reset_checkpoint
        self.transfer_id = spec.checkpoint_id or f"adhoc-{uuid.uuid4()}"
        self._stop = threading.Event()
        self._columns_lock = threading.Lock()
        self._out_columns: tuple[str, ...] | None = None

    # -- orchestration -----------------------------------------------------------------------

    def run(self) -> TransferSummary:
        started = time.perf_counter()
        with self.source as source, self._connect(self.destination) as dst:
            plan = source.plan(self.spec, dst)
            dst.commit()
            store = self._checkpoints(dst)
            writer = writer_for(plan, self.spec.checkpoint_schema, self.transfer_id, dst, self.log)
            if writer.note:
                self.log.info("%s: %s", self._label(plan), writer.note)
            parts, resumed_from = self._parts(plan, store, writer, dst)
            if self.spec.transform is None:
                self._out_columns = tuple(c.name for c in plan.dest_columns)
                writer.prepare(dst, self._out_columns)

            rows_before = sum(p.rows for p in parts)
            progress = Progress(
                self.log,
                self._label(plan),
                source.estimate_rows(plan),
                rows_before,
                self.metrics,
                self.metric_tags,
            )
            if writer.keeps_checkpoint:  # a finished append picks up keys added since it ran
                for part in parts:
                    part.done = False
            pending = [p for p in parts if not p.done]
            self._run_parts(plan, writer, store, progress, pending, len(parts), dst)
            self._finalize(writer, store, parts, dst)
        return self._summary(
            plan, writer, progress, time.perf_counter() - started, resumed_from, bool(pending)
        )

    def _checkpoints(self, dst: psycopg.Connection[Any]) -> CheckpointStore:
        """This transfer's checkpoint store, old finished checkpoints purged (forgotten on reset)."""
        store = CheckpointStore(self.spec.checkpoint_schema, self.transfer_id)
        store.ensure(dst)
        store.purge_finished(dst, CHECKPOINT_RETENTION_DAYS)
        if self.reset_checkpoint:
            store.delete(dst)
            dst.commit()
        return store

    def _parts(
        self, plan: TransferPlan, store: CheckpointStore, writer: ChunkWriter, dst: psycopg.Connection[Any]
    ) -> tuple[list[PartState], Any]:
        """The checkpoint's parts and where they resume, or new parts from the first key."""
        fingerprint = plan.fingerprint()
        parts = store.load(dst, fingerprint)
        if parts is None:
            parts = self.source.parts(plan, self.spec.parallelism)
            # A fresh checkpoint starts from the first key: rows an earlier attempt staged under
            # this transfer id would be published twice. Dropped in the checkpoint's transaction.
            writer.discard(dst)
            store.create(dst, fingerprint, parts)
            return parts, None
        resumed_from = resume_point(parts)
        if resumed_from is not None:
            self.log.info("%s: resuming after %s", self._label(plan), resumed_from)
        return parts, resumed_from

    def _finalize(
        self,
        writer: ChunkWriter,
        store: CheckpointStore,
        parts: list[PartState],
        dst: psycopg.Connection[Any],
    ) -> None:
        """Publish (swap, merge, ...) with the checkpoint's end in one synchronous commit."""
        writer.before_finalize(dst, sum(p.written for p in parts))
        try:
            with dst.transaction():
                pin_settings(dst, {"synchronous_commit": "on"}, local=True)
                writer.finalize(dst, sum(p.written for p in parts))
                if not writer.keeps_checkpoint or self.spec.checkpoint_id is None:
                    store.delete(dst)
                else:
                    store.mark_finished(dst)
        except StagingLostError:
            # Nothing was published (the swap rolled back); start the next attempt from scratch.
            writer.discard(dst)
            store.delete(dst)
            dst.commit()
            raise

    def _summary(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        progress: Progress,
        seconds: float,
        resumed_from: Any,
        read_any: bool,
    ) -> TransferSummary:
        return TransferSummary(
            rows=progress.rows_written,
            rows_read=progress.rows,
            rows_before_resume=progress.rows_before,
            bytes=progress.bytes,
            chunks=progress.chunks,
            seconds=round(seconds, 3),
            rows_per_second=round(progress.rows / seconds, 1) if seconds > 0 else 0.0,
            peak_rss_mb=round(peak_rss_mb(), 1),
            resumed_from=resumed_from,
            copy_format=plan.copy_format,
            write_mode=str(self.spec.write_mode),
            strategy=writer.strategy,
            strategy_note=writer.note,
            parallelism=self.spec.parallelism,
            source=self.source.label,
            destination=plan.destination.label,
            consistency=self.source.consistency if read_any else "nothing left to read",
            files=list(getattr(self.source, "files", ())),
        )

    def _run_parts(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        store: CheckpointStore,
        progress: Progress,
        pending: list[PartState],
        total_parts: int,
        dst: psycopg.Connection[Any],
    ) -> None:
        if not pending:
            return
        # At most `parallelism` streams at once: a file source has a part per file, however many.
        workers = min(self.spec.parallelism, len(pending))
        with self.source.readers(plan, pending) as readers:
            if workers == 1:
                for state, reader in zip(pending, readers, strict=True):
                    self._stream(plan, writer, store, progress, state, total_parts, reader, dst)
                return

            def run_one(state: PartState, reader: ChunkReader) -> None:
                with self._connect(self.destination) as d:
                    self._stream(plan, writer, store, progress, state, total_parts, reader, d)

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="etl-stream") as pool:
                futures = [pool.submit(run_one, p, r) for p, r in zip(pending, readers, strict=True)]
                errors = []
                for fut in futures:
                    try:
                        fut.result()
                    except _Stop:
                        pass
                    except BaseException as exc:
                        self._stop.set()
                        errors.append(exc)
            if errors:
                raise errors[0]

    def _stream(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        store: CheckpointStore,
        progress: Progress,
        state: PartState,
        total_parts: int,
        reader: ChunkReader,
        dst: psycopg.Connection[Any],
    ) -> None:
        """Moves one part chunk by chunk; each chunk commits with its checkpoint."""
        if self.spec.transform is None:
            chunks: Iterator[Callable[[psycopg.Cursor[Any]], ChunkResult]] = self._piped_chunks(
                plan, writer, reader, state
            )
        else:
            # Read the next chunk while this one is transformed and written.
            chunks = prefetch(self._transformed_chunks(plan, writer, reader, dst, state))
        for load in chunks:
            lo = state.resume_key
            t0 = time.perf_counter()
            with dst.cursor() as dcur:
                result = load(dcur)
                state.rows += result.rows_read
                state.written += result.rows_written
                state.bytes += result.bytes
                state.chunks += 1 if result.rows_read else 0
                state.last_key = result.last_key if result.last_key is not None else state.last_key
                state.done = result.exhausted
            # One round trip: the checkpoint, the chunk's COMMIT and the next chunk's BEGIN.
            store.advance_and_commit(dst, state, begin=not state.done)
            if result.rows_read:
                progress.chunk_done(
                    state.part,
                    total_parts,
                    result.rows_read,
                    result.rows_written,
                    result.bytes,
                    time.perf_counter() - t0,
                    f"({'start' if lo is None else lo}, {result.last_key}]",
                )
            if state.done:
                return

    def _read(self, reader: ChunkReader, lo: str | None, hi: str | None) -> SourceChunk:
        if self._stop.is_set():
            raise _Stop
        return reader.read(lo, hi, self.spec.chunk_rows)

    def _piped_chunks(
        self, plan: TransferPlan, writer: ChunkWriter, reader: ChunkReader, state: PartState
    ) -> Iterator[Callable[[psycopg.Cursor[Any]], ChunkResult]]:
        """One loader per chunk; each reads the source while it writes the destination."""
        while True:
            lo = state.resume_key
            chunk = self._read(reader, lo, state.hi)
            yield partial(self._pipe_chunk, plan, writer, chunk=chunk, lo=lo)

    def _transformed_chunks(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        reader: ChunkReader,
        dst: psycopg.Connection[Any],
        state: PartState,
    ) -> Iterator[Callable[[psycopg.Cursor[Any]], ChunkResult]]:
        """Reads chunks ahead (keyset: the next range starts after this chunk's last key)."""
        lo = state.resume_key
        while True:
            chunk = self._read(reader, lo, state.hi)
            raw = bytearray()
            for block in chunk.blocks():
                raw += block
            end = chunk.end()
            yield partial(self._transform_chunk, plan, writer, dst, raw=raw, chunk=chunk, end=end, lo=lo)
            if end.exhausted:
                return
            lo = end.last_key

    # -- one chunk ----------------------------------------------------------------------------

    def _pipe_chunk(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        dcur: psycopg.Cursor[Any],
        *,
        chunk: SourceChunk,
        lo: str | None,
    ) -> ChunkResult:
        """Forwards raw COPY blocks from source to destination: no decoding, bounded memory."""
        columns = self._out_columns or ()
        nbytes = 0
        try:
            writer.before_copy(dcur, columns)
            with dcur.copy(plan.copy_in(writer.target(), columns)) as inp:
                for block in chunk.blocks():
                    inp.write(block)
                    nbytes += len(block)
            writer.after_copy(dcur, columns)
        except psycopg.Error as exc:
            raise chunk_rejected(
                plan.destination.label, plan.spec.source_label, exc, chunk.where(lo)
            ) from None
        end = chunk.end()
        return ChunkResult(end.rows, end.rows, nbytes, end.last_key, end.exhausted)

    def _transform_chunk(
        self,
        plan: TransferPlan,
        writer: ChunkWriter,
        dst: psycopg.Connection[Any],
        dcur: psycopg.Cursor[Any],
        *,
        raw: bytearray,
        chunk: SourceChunk,
        end: ChunkEnd,
        lo: str | None,
    ) -> ChunkResult:
        from etl_platform.transfer import transform_io  # pyarrow/pandas: only transforms pay for them

        if not end.rows:
            return ChunkResult(0, 0, 0, None, end.exhausted)
        result = transform_io.transform_chunk(raw, plan, chunk.where(lo))
        columns = self._output_columns(plan, writer, dst, result.column_names)
        payload = transform_io.arrow_to_csv(result)
        try:
            writer.before_copy(dcur, columns)
            with dcur.copy(plan.copy_in(writer.target(), columns)) as inp:
                view = memoryview(payload)
                for start in range(0, len(view), BLOCK_SIZE):
                    inp.write(view[start : start + BLOCK_SIZE])
            writer.after_copy(dcur, columns)
        except psycopg.Error as exc:
            raise chunk_rejected(
                plan.destination.label, plan.spec.source_label, exc, chunk.where(lo)
            ) from None
        return ChunkResult(end.rows, result.num_rows, len(payload), end.last_key, end.exhausted)

    def _output_columns(
        self, plan: TransferPlan, writer: ChunkWriter, dst: psycopg.Connection[Any], names: list[str]
    ) -> tuple[str, ...]:
        with self._columns_lock:
            if self._out_columns is None:
                self._out_columns = check_output_columns(plan, list(names))
                with self._connect(self.destination) as ddl:
                    writer.prepare(ddl, self._out_columns)
            elif tuple(names) != self._out_columns:
                raise TransferError(
                    f"transform returned columns {list(names)} for a later chunk but "
                    f"{list(self._out_columns)} for the first; it must return the same columns every time."
                )
            return self._out_columns

    # -- helpers ------------------------------------------------------------------------------

    def _connect(self, factory: ConnectionFactory) -> psycopg.Connection[Any]:
        """A destination connection, pinned like the source's."""
        # synchronous_commit off is safe: each chunk and its checkpoint commit together, and the
        # final commit is synchronous.
        return connect_pinned(factory, extra={"synchronous_commit": "off"})

    def _label(self, plan: TransferPlan) -> str:
        return f"transfer {self.spec.source_label} -> {plan.destination.label}"


def run_transfer(spec: TransferSpec, source_dsn: str, destination_dsn: str, **kwargs: Any) -> TransferSummary:
    """Standalone entry point: libpq connection strings instead of Airflow connections."""
    return TransferEngine(
        spec, lambda: psycopg.connect(source_dsn), lambda: psycopg.connect(destination_dsn), **kwargs
    ).run()

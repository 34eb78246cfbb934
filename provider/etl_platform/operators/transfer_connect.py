"""The transfer operator's ends, from its Airflow connections: the source, the destination, the export.

Each connection is looked up once and kept on the operator (`_connections`): lineage and asset URIs
are built from the same connection the run used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from etl_platform.hooks.kinds import MYSQL_TYPES, POSTGRES_TYPES, kind_of, lookup
from etl_platform.hooks.postgres import ConnectionFactory, EtlPostgresHook
from etl_platform.operators.transfer_settings import export_spec
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.sources.base import Source
from etl_platform.transfer.sources.postgres import PostgresSource

if TYPE_CHECKING:
    from etl_platform.operators.transfer import StreamingTransferOperator
    from etl_platform.transfer.export import ExportEngine


def postgres_factory(op: StreamingTransferOperator, setting: str) -> ConnectionFactory:
    """Connections for the PostgreSQL side `setting` names, from one connection look-up."""
    conn_id = getattr(op, setting)
    connection = op._connections[setting] = lookup(conn_id, setting)
    kind = kind_of(connection)
    if kind not in POSTGRES_TYPES:
        raise AirflowFailException(
            f"{setting} {conn_id!r} is a {kind!r} connection; this side must be PostgreSQL "
            f"({', '.join(sorted(POSTGRES_TYPES))})."
        )
    return EtlPostgresHook(conn_id).connection_factory(connection)


def source_for(op: StreamingTransferOperator) -> Source:
    """The connection's type picks the source; files come from source_path."""
    if op.source_path:
        return _file_source(op)
    assert op.source_conn_id is not None
    connection = op._connections["source_conn_id"] = lookup(op.source_conn_id, "source_conn_id")
    kind = kind_of(connection)
    if kind in POSTGRES_TYPES:
        return PostgresSource(EtlPostgresHook(op.source_conn_id).connection_factory(connection))
    if kind in MYSQL_TYPES:
        from etl_platform.hooks.mysql import EtlMySqlHook
        from etl_platform.transfer.sources.mysql import MySqlSource

        return MySqlSource(
            EtlMySqlHook(op.source_conn_id).connection_factory(),
            zero_dates=op.zero_dates,
            logger=op.log,
        )
    raise AirflowFailException(
        f"source_conn_id {op.source_conn_id!r} is a {kind!r} connection; sources are postgres, "
        "mysql, or files through source_path."
    )


def _file_source(op: StreamingTransferOperator) -> Source:
    from etl_platform.hooks.object_store import filesystem_for
    from etl_platform.transfer.files.csv_stream import CsvOptions
    from etl_platform.transfer.sources.files import FileSource

    urls = [op.source_path] if isinstance(op.source_path, str) else list(op.source_path or ())
    located = [filesystem_for(url, op.source_conn_id) for url in urls]
    schemes = {type(fs).__name__ for fs, _ in located}
    if len(schemes) != 1:
        raise TransferConfigError(f"source_path entries must share one storage, got {urls}.")
    # A trailing "/" says "everything under this prefix"; the storage path drops it.
    paths = tuple(
        path + ("/" if url.endswith("/") else "") for url, (_, path) in zip(urls, located, strict=True)
    )
    reject = filesystem_for(op.reject_path, op.source_conn_id)[1] if op.reject_path else None
    try:
        csv = CsvOptions(**(op.csv_options or {}))
    except TypeError as exc:
        raise TransferConfigError(f"csv_options: {exc}") from None
    return FileSource(
        located[0][0],
        paths,
        file_format=op.source_format,
        csv=csv,
        reject_path=reject,
        max_rejects=op.max_rejects,
        allow_empty=op.allow_empty,
        label=", ".join(urls) if len(urls) < 3 else f"{urls[0]} (+{len(urls) - 1} more)",
        logger=op.log,
    )


def export_engine(op: StreamingTransferOperator, metrics: Any, tags: dict[str, str]) -> ExportEngine:
    """PostgreSQL -> files: the destination connection (if any) is the object store's."""
    from etl_platform.hooks.object_store import filesystem_for
    from etl_platform.transfer.export import ExportEngine

    fs, path = filesystem_for(str(op.destination_path), op.destination_conn_id)
    assert op.source_conn_id is not None
    return ExportEngine(
        export_spec(op, destination=path),
        postgres_factory(op, "source_conn_id"),
        fs,
        logger=op.log,
        on_published=lambda name: metrics.incr("etl.transfer.files", 1, tags=tags),
    )

"""The transfer's asset event: one event, on the destination's asset, for a run that changed it.

URIs come from the connections the run looked up (never read at parse time); a connection whose host
cannot be a URI host logs a warning and the run emits no event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, Context

from etl_platform.assets import AssetUriError, connection_table_uri, file_uri
from etl_platform.operators.transfer_settings import window

if TYPE_CHECKING:
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from etl_platform.operators.transfer import StreamingTransferOperator


def alias_for(dag_id: str, task_id: str) -> AssetAlias:
    """The task's alias: declared when the DAG is parsed, so the dag-processor registers it; the event's
    asset is only named at run time (its URI needs the connection)."""
    return AssetAlias(name=f"etl_platform.transfer:{dag_id}.{task_id}")


def with_alias(outlets: list[Any], alias: AssetAlias) -> list[Any]:
    """`outlets` and the alias, once (a mapped task's copy inherits it from partial)."""
    return outlets if alias in outlets else [*outlets, alias]


def declare_partial_alias(partial: OperatorPartial) -> OperatorPartial:
    """A mapped transfer declares its alias at parse time too (its __init__ runs only on the worker).

    Otherwise no DAG declares the alias, and mapped tasks that finish together each create it in the
    metadata DB when they record their events: one loses on its unique index and Airflow fails it.
    """
    dag = partial.kwargs.get("dag")
    if dag is not None:
        alias = alias_for(dag.dag_id, partial.kwargs["task_id"])
        partial.kwargs["outlets"] = with_alias(list(partial.kwargs.get("outlets") or []), alias)
    return partial


def emit_asset_event(op: StreamingTransferOperator, context: Context, summary: dict[str, Any]) -> None:
    """One event on the destination asset through the task's alias, or a log line saying why not."""
    # Counting the rows earlier tries of this run wrote: a retry that resumes after the last
    # chunk moves nothing itself, yet the run changed the destination.
    rows = int(summary.get("rows") or 0) + int(summary.get("rows_before_resume") or 0)
    if rows == 0 and op.write_mode != "truncate":
        op.log.info("No asset event: the run moved no rows (an empty window changes nothing).")
        return
    asset = _destination_asset(op)
    if asset is None:
        return
    extra: dict[str, Any] = {
        "rows": rows,
        "bytes": int(summary.get("bytes") or 0),
        "window_start": window(op)[0],
        "window_end": window(op)[1],
        "source": _asset_uri(op, "source", lambda: source_uri(op)),
    }
    context["outlet_events"][op.asset_alias].add(asset, extra=extra)
    op.log.info("Asset event on %s: %s", asset.uri, extra)


def _destination_asset(op: StreamingTransferOperator) -> Asset | None:
    uri = _asset_uri(op, "destination", lambda: destination_uri(op))
    declared = op.destination_asset
    if declared is None:
        return Asset(uri=uri) if uri else None
    if uri and uri != declared.uri:
        op.log.warning(
            "destination_asset %r declares %s but the destination resolves to %s; the event goes "
            "on the declared asset.",
            declared.name,
            declared.uri,
            uri,
        )
    return declared


def uri_or_none(
    build: Callable[[], str | None], warn: Callable[[AssetUriError], None] | None = None
) -> str | None:
    """The URI `build` makes, or None where a connection's host cannot be a URI host.

    Not an error either way: the asset event says why in a warning (`warn`), lineage stays quiet.
    """
    try:
        return build()
    except AssetUriError as exc:
        if warn is not None:
            warn(exc)
        return None


def _asset_uri(op: StreamingTransferOperator, side: str, build: Callable[[], str | None]) -> str | None:
    return uri_or_none(build, lambda exc: op.log.warning("No asset for the %s: %s.", side, exc))


def destination_uri(op: StreamingTransferOperator) -> str | None:
    """The destination table's or directory's URI; None before its connection was looked up."""
    if op.destination_path:
        return file_uri(str(op.destination_path))
    connection = op._connections.get("destination_conn_id")
    return connection_table_uri(connection, str(op.destination_table)) if connection else None


def source_uri(op: StreamingTransferOperator) -> str | None:
    """The source table's or single file's URI; None for a query or several files."""
    if op.source_path:
        paths = [op.source_path] if isinstance(op.source_path, str) else list(op.source_path)
        return file_uri(paths[0]) if len(paths) == 1 else None
    connection = op._connections.get("source_conn_id")
    if op.source_table and connection is not None:
        return connection_table_uri(connection, op.source_table)
    return None  # a query reads no single table

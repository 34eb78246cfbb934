"""The transfer operator's settings as specs: which sides are given, the table spec, the export spec.

Checked when the DAG is parsed (values Jinja will change: when they are rendered, in execute) and
again in execute before any data moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.export_spec import ExportSpec
from etl_platform.transfer.sources.mysql_types import ZeroDates
from etl_platform.transfer.spec import TransferSpec

if TYPE_CHECKING:
    from etl_platform.operators.transfer import StreamingTransferOperator

# The strings each mode-like setting accepts (TransferSpec and ZeroDates check them when it is built).
WriteModeName = Literal["append", "truncate", "upsert", "delete_insert"]
StrategyName = Literal["auto", "staged"]
TransformFormatName = Literal["pandas", "arrow"]
ZeroDatesName = Literal["error", "null"]
FileFormatName = Literal["parquet", "csv"]

# The operator's settings Jinja never renders (all but its template_fields), kept under their names.
SETTINGS: tuple[str, ...] = (
    "source_conn_id",
    "destination_conn_id",
    "source_format",
    "csv_options",
    "max_rejects",
    "allow_empty",
    "zero_dates",
    "destination_format",
    "rows_per_file",
    "partition_by",
    "chunk_rows",
    "write_mode",
    "conflict_columns",
    "transform",
    "transform_format",
    "parallelism",
    "checkpoint_schema",
    "strategy",
    "lock_timeout",
    "reset_checkpoint",
    "ledger_conn_id",
    "destination_asset",
)

# Settings an export (destination_path) never reads, with their defaults: given anything else they
# would be ignored in silence, so the export refuses them. The window (window_start/window_end) only
# exists with incremental_column.
TABLE_ONLY_DEFAULTS: dict[str, Any] = {
    "write_mode": "append",
    "conflict_columns": None,
    "incremental_column": None,
    "transform": None,
    "transform_format": "pandas",
    "parallelism": 1,
    "key_min": None,
    "key_max": None,
    "checkpoint_schema": "etl_platform",
    "strategy": "auto",
    "lock_timeout": "5s",
    "reset_checkpoint": False,
    "source_format": None,
    "csv_options": None,
    "reject_path": None,
    "max_rejects": 0,
    "allow_empty": True,
    "zero_dates": "error",
}


def templated(value: object) -> bool:
    """A value Jinja will change when it renders: checked in execute, not at parse time."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_sides(op: StreamingTransferOperator) -> None:
    """One destination, the connections each side needs, and no files-to-files."""
    if bool(op.destination_table) == bool(op.destination_path):
        raise TransferConfigError("Give exactly one of destination_table or destination_path.")
    if op.destination_table and not op.destination_conn_id:
        raise TransferConfigError("destination_table needs destination_conn_id (a postgres connection).")
    if (op.source_table or op.source_sql) and not op.source_conn_id:
        raise TransferConfigError("source_table and source_sql need source_conn_id.")
    if op.destination_path and op.source_path:
        raise TransferConfigError("files to files is not a transfer: give a table or query as the source.")
    if op.zero_dates not in {z.value for z in ZeroDates}:
        raise TransferConfigError(
            f"zero_dates {op.zero_dates!r} is not one of {[z.value for z in ZeroDates]}."
        )


def check_export_settings(op: StreamingTransferOperator, *, rendered: bool) -> None:
    """An export refuses every table-only setting given a non-default value, naming it.

    Before rendering (`rendered` False) a templated value is let through: execute checks it rendered.
    """
    for name, default in TABLE_ONLY_DEFAULTS.items():
        value = getattr(op, name)
        if not rendered and templated(value):
            continue
        if _is_default(value, default):
            continue
        raise TransferConfigError(
            f"{name}={value!r} does not apply to an export (destination_path): an export reads the "
            f"whole table or query into files; leave {name} at its default ({default!r})."
        )


def _is_default(value: Any, default: Any) -> bool:
    # A templated optional setting renders None as "" or "None" (as key_min/key_max are read).
    if default is None:
        return value is None or value in ("", "None") or value == () or value == {}
    return bool(value == default)


def table_spec(op: StreamingTransferOperator, checkpoint_id: str) -> TransferSpec:
    """The spec of a transfer into a PostgreSQL table."""
    return TransferSpec(
        destination_table=op.destination_table or "",
        source_table=op.source_table or None,
        source_sql=op.source_sql or None,
        source_path=_paths(op.source_path),
        key_column=op.key_column or None,
        chunk_rows=op.chunk_rows,
        write_mode=op.write_mode,
        conflict_columns=op.conflict_columns,
        incremental_column=op.incremental_column or None,
        window_start=window(op)[0],
        window_end=window(op)[1],
        transform=op.transform,
        transform_format=op.transform_format,
        parallelism=op.parallelism,
        key_min=op.key_min if op.key_min not in ("", "None") else None,
        key_max=op.key_max if op.key_max not in ("", "None") else None,
        checkpoint_id=checkpoint_id,
        checkpoint_schema=op.checkpoint_schema,
        strategy=op.strategy,
        lock_timeout=op.lock_timeout,
    )


def window(op: StreamingTransferOperator) -> tuple[Any, Any]:
    """[window_start, window_end): only with incremental_column (else the default's template is unused)."""
    if not op.incremental_column:
        return None, None
    return op.window_start or None, op.window_end or None


def export_spec(op: StreamingTransferOperator, destination: str | None = None) -> ExportSpec:
    """The export's spec; `destination` is the path on the storage (the URL at parse time)."""
    return ExportSpec(
        destination=destination or str(op.destination_path),
        source_table=op.source_table or None,
        source_sql=op.source_sql or None,
        key_column=op.key_column or None,
        file_format=op.destination_format or suffix_format(str(op.destination_path)),
        rows_per_file=op.rows_per_file,
        partition_by=op.partition_by or None,
        chunk_rows=op.chunk_rows,
    )


def check_at_parse(op: StreamingTransferOperator) -> None:
    """Refuse nonsense when the DAG is parsed, not when it runs (as the ValueError DAG parsing shows)."""
    try:
        check_sides(op)
        if op.destination_path:
            check_export_settings(op, rendered=False)
            export_spec(op)
        else:
            table_spec(op, checkpoint_id="parse-check")
    except TransferConfigError as exc:
        raise ValueError(f"{op.task_id}: {exc}") from None


def suffix_format(url: str) -> str:
    """parquet unless the destination's name says csv (a directory usually says nothing)."""
    return "csv" if ".csv" in url.rsplit("/", 1)[-1].lower() else "parquet"


def _paths(value: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    if not value:
        return None
    return value if isinstance(value, str) else tuple(value)

"""What a MariaDB/MySQL plan refuses, naming why: a key that cannot order chunks, a column with no
exact mapping into its destination column.

source_table's key_column must be NOT NULL with a unique index of its own (a view has no index: give it
as source_sql); source_sql's key is taken on trust, as with PostgreSQL.
"""

from __future__ import annotations

from contextlib import suppress

from etl_platform.transfer.catalog import Column
from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.sources import mysql_catalog
from etl_platform.transfer.sources.mysql_types import (
    INTEGER_BITS,
    MyColumn,
    NoMapping,
    cast_hint,
    natural_type,
    quote_ident,
)

# The kind of each key type's literal in a chunk's bounds.
KEY_KINDS = {
    **dict.fromkeys(INTEGER_BITS, "int"),
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "decimal"),
    **dict.fromkeys(("char", "varchar"), "text"),
    **dict.fromkeys(("date", "datetime", "timestamp"), "datetime"),
}


def refusal(label: str, dest_label: str, refused: list[tuple[MyColumn, Column, str]]) -> str:
    """Names each refused column with both types and why, and a source_sql that would map."""
    listed = "; ".join(f"{c.name!r} {c.type} -> {t.type_name}: {why}" for c, t, why in refused)
    casts = ", ".join(f"{cast_hint(c, t)} AS {quote_ident(c.name)}" for c, t, _ in refused)
    wider = []
    for col, _, _ in refused:
        with suppress(NoMapping):
            wider.append(f"{col.name} to {natural_type(col)[1]}")
    source = "" if label == "source_sql" else f" FROM {label}"
    holds = f" ({', '.join(wider)})" if wider else ""
    return (
        f"{label} has columns with no exact mapping into {dest_label}: {listed}. Cast them in source_sql "
        f"(for example SELECT {casts}, ...{source}; MariaDB's CAST rounds, clips or wraps a value that "
        f"does not fit, with only a warning) or change the destination column{holds}."
    )


def table_key(table: mysql_catalog.MyTable, key_column: str | None) -> MyColumn:
    if table.is_view:
        raise TransferConfigError(
            f"source_table {table.label} is a view: it has no index to show a key is unique. Give it as "
            f"source_sql (SELECT ... FROM {table.label}) with a key_column that is unique in it."
        )
    if key_column is None:
        if len(table.primary_key) != 1:
            what = (
                "no primary key"
                if not table.primary_key
                else f"a composite primary key {list(table.primary_key)}"
            )
            raise TransferConfigError(f"source_table {table.label} has {what}: set key_column.")
        key_column = table.primary_key[0]
    column = table.column(key_column)
    if column is None:
        raise TransferConfigError(
            f"key_column {key_column!r} is not a column of {table.label} "
            f"(columns: {', '.join(c.name for c in table.columns)})."
        )
    if key_column not in table.unique_keys and table.primary_key != (key_column,):
        raise TransferConfigError(
            f"key_column {key_column!r} of {table.label} has no unique index of its own: chunks need an "
            "ordered unique key (give the primary key or a uniquely indexed column)."
        )
    if column.nullable:
        # A unique index admits any number of NULLs, and `key > last` never returns them again.
        raise TransferConfigError(
            f"key_column {key_column!r} of {table.label} can be NULL: a unique index allows many NULL "
            "keys, which keyset chunks cannot order. Make it NOT NULL or give the primary key."
        )
    return _keyable(column, table.label)


def query_key(columns: tuple[MyColumn, ...], key_column: str) -> MyColumn:
    column = next((c for c in columns if c.name == key_column), None)
    if column is None:
        raise TransferConfigError(
            f"key_column {key_column!r} is not an output column of source_sql "
            f"(columns: {', '.join(c.name for c in columns)})."
        )
    return _keyable(column, "source_sql")


def _keyable(column: MyColumn, label: str) -> MyColumn:
    if column.base not in KEY_KINDS:
        raise TransferConfigError(
            f"key_column {column.name!r} of {label} is a {column.type}: chunk keys must be integers, "
            "decimals, strings or dates."
        )
    return column

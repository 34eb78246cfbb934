"""Catalog look-ups on MariaDB/MySQL: tables, their columns and keys, the shape of a query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etl_platform.transfer.errors import TransferConfigError
from etl_platform.transfer.sources.mysql_types import MyColumn, quote_ident

MVCC_ENGINES = frozenset({"innodb", "xtradb", "rocksdb"})
_ACCESS_DENIED = {1044, 1142}  # to the database; to a table (or command)


@dataclass(frozen=True)
class MyTable:
    database: str
    name: str
    columns: tuple[MyColumn, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[str, ...]  # columns with a single-column, full-length unique index of their own
    is_view: bool = False  # a view has no indexes: nothing says a key is unique
    engine: str | None = None  # InnoDB, MyISAM, Aria, ...: only MVCC engines give a snapshot

    @property
    def has_snapshots(self) -> bool:
        """Whether START TRANSACTION WITH CONSISTENT SNAPSHOT covers this table (MVCC engines only:
        MyISAM, Aria, MEMORY and CSV tables are read as they are at each statement)."""
        return self.engine is None or self.engine.lower() in MVCC_ENGINES

    @property
    def ident(self) -> str:
        return f"{quote_ident(self.database)}.{quote_ident(self.name)}"

    @property
    def label(self) -> str:
        return f"{self.database}.{self.name}"

    def column(self, name: str) -> MyColumn | None:
        return next((c for c in self.columns if c.name == name), None)


def _rows(conn: Any, query: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        return list(cur.fetchall())


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


def resolve_table(conn: Any, table: str, setting: str = "source_table") -> MyTable:
    """`table` is "database.table" or "table" (in the connection's database)."""
    database, _, name = table.rpartition(".")
    database = database.strip("`") or _text(_rows(conn, "SELECT DATABASE()")[0][0]) or ""
    name = name.strip("`")
    found = _rows(
        conn,
        "SELECT TABLE_TYPE, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (database, name),
    )
    if not found:
        raise TransferConfigError(
            f"{setting} {table!r} does not exist in MariaDB/MySQL database {database or '(none selected)'!r}."
        )
    ident = f"{quote_ident(database)}.{quote_ident(name)}"
    columns = _show_columns(conn, ident)
    if _text(found[0][0]) == "VIEW":
        return MyTable(database, name, columns, (), (), is_view=True)
    unique: dict[str, list[tuple[int, str, bool]]] = {}
    for row in _rows(conn, f"SHOW INDEX FROM {ident}"):
        # Table, Non_unique, Key_name, Seq_in_index, Column_name, Collation, Cardinality, Sub_part, ...
        non_unique, key_name, seq, column, sub_part = row[1], _text(row[2]), row[3], _text(row[4]), row[7]
        if int(non_unique) == 0:
            unique.setdefault(key_name, []).append((int(seq), column, sub_part is None))
    primary = tuple(c for _, c, _ in sorted(unique.get("PRIMARY", [])))
    singles = tuple(
        parts[0][1]
        for parts in unique.values()
        if len(parts) == 1 and parts[0][2] and parts[0][1] is not None
    )
    return MyTable(database, name, columns, primary, singles, engine=_text(found[0][1]))


def describe_query(conn: Any, query: str) -> tuple[MyColumn, ...]:
    """Output columns of a SELECT, typed as a table would be, without reading its rows."""
    temp = quote_ident("_etl_describe")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {temp}")
            # source_sql is the user's SELECT, sent as written (as with a PostgreSQL source).
            cur.execute(f"CREATE TEMPORARY TABLE {temp} AS SELECT * FROM ({query}) AS src LIMIT 0")
    except Exception as exc:
        code = exc.args[0] if exc.args else None
        if code in _ACCESS_DENIED:
            raise TransferConfigError(
                "source_sql could not be described: its output columns are typed through an empty "
                f"temporary table, which needs the CREATE TEMPORARY TABLES privilege ({exc})."
            ) from None
        raise TransferConfigError(f"source_sql is not a valid MariaDB/MySQL SELECT: {exc}") from None
    try:
        return _show_columns(conn, temp)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {temp}")


def _show_columns(conn: Any, ident: str) -> tuple[MyColumn, ...]:
    # Field, Type, Collation, Null, Key, Default, Extra, Privileges, Comment
    return tuple(
        MyColumn(_text(r[0]), _text(r[1]), _text(r[2]), _text(r[3]) == "YES")
        for r in _rows(conn, f"SHOW FULL COLUMNS FROM {ident}")
    )


def estimate_rows(conn: Any, select: str) -> int:
    """The optimizer's row estimate (EXPLAIN's first row), for progress percentages."""
    try:
        rows = _rows(conn, f"EXPLAIN {select}")
    except Exception:
        return 0
    with_rows = [r for r in rows if len(r) > 8 and r[8] is not None]
    return int(with_rows[0][8]) if with_rows else 0

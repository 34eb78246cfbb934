"""A table built like another, loaded without indexes, indexed afterwards, then put in its place.

The full refresh swaps one for the destination (`swap.py`); the partition swap one per partition
(`partition_swap.py`). Indexes are captured when the table is created (LIKE ... INCLUDING ALL makes
them, paired with the originals by shape) and dropped until the load is done; the pending builds
live in the new table's comment, so a crash loses neither the rows (a logged table) nor the plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.common.session import pin_settings, reset_settings
from etl_platform.transfer import swap_catalog
from etl_platform.transfer.carry_over import (
    SequenceMoves,
    carry_over,
    continue_sequence,
    identity_sequences,
    options,
)
from etl_platform.transfer.swap_catalog import IndexCopy

_INDEX_BUILD_MEMORY = "256MB"  # maintenance_work_mem for the index builds: sorts in memory, not on disk


class CannotSwap(Exception):
    """Something the swap cannot keep appeared after the plan; the rows go in another way."""


@dataclass(frozen=True)
class NewTable:
    """`ident` (in the checkpoint schema) to become `original_schema.original_name` (oid `original`)."""

    ident: sql.Identifier
    original: int
    original_schema: str
    original_name: str

    @property
    def schema(self) -> str:
        return str(self.ident._obj[0])

    @property
    def name(self) -> str:
        return str(self.ident._obj[1])

    @property
    def original_ident(self) -> sql.Identifier:
        return sql.Identifier(self.original_schema, self.original_name)

    def oid(self, conn: psycopg.Connection[Any]) -> int | None:
        row = conn.execute("SELECT to_regclass(%s)::oid", (self.ident.as_string(conn),)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def unlogged(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT relpersistence = 'u' FROM pg_class WHERE oid = %s", (self.oid(conn),)
        ).fetchone()
        return bool(row and row[0])

    # -- before the load ------------------------------------------------------------------------

    def create(self, conn: psycopg.Connection[Any]) -> None:
        """In the caller's transaction: the table, its index builds deferred, identity continued."""
        create_like(conn, self.original, self.original_ident, self.ident)
        oid = self.oid(conn)
        assert oid is not None
        for _, new_sequence, old_sequence in identity_sequences(conn, self.original, oid):
            # rows the load numbers continue the original's sequence, as the staged INSERT's would
            continue_sequence(conn, new_sequence, old_sequence)
        copies = swap_catalog.index_copies(conn, self.original, oid)
        for copy in copies:  # built after the load, in one pass each
            if copy.constraint:
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(self.ident, sql.Identifier(copy.name))
                )
            else:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(self.schema, copy.name)))
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                self.ident, sql.Literal(json.dumps([c.as_json() for c in copies]))
            )
        )

    # -- after the load -------------------------------------------------------------------------

    def build(self, conn: psycopg.Connection[Any]) -> None:
        """Indexes, constraints, foreign keys and statistics, each committed (a crash resumes here)."""
        oid = self.oid(conn)
        assert oid is not None, f"{self.schema}.{self.name} vanished"
        pin_settings(conn, {"maintenance_work_mem": _INDEX_BUILD_MEMORY})
        existing = _index_names(conn, oid)
        for copy in self.copies(conn):
            if copy.name in existing:
                continue
            if copy.contype == "x":
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        self.ident, sql.Identifier(copy.name), sql.SQL(copy.constraint_ddl or "")
                    )
                )
            else:
                conn.execute(sql.SQL(copy.ddl))  # type: ignore[arg-type]  # the server's own text
                if copy.contype in ("p", "u"):
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
                            self.ident,
                            sql.Identifier(copy.name),
                            sql.SQL("PRIMARY KEY" if copy.contype == "p" else "UNIQUE"),
                            sql.Identifier(copy.name),
                            sql.SQL(_deferral(copy)),
                        )
                    )
            conn.commit()
        reset_settings(conn, ["maintenance_work_mem"])
        present = {r[0] for r in conn.execute(swap_catalog.OUTBOUND_FKS, {"oid": oid}).fetchall()}
        for name, definition, validated in conn.execute(
            swap_catalog.OUTBOUND_FKS, {"oid": self.original}
        ).fetchall():
            if name in present:
                continue
            # NOT VALID first (a brief lock on the referenced table), then VALIDATE, which lets its
            # writers go on while the new rows are checked.
            suffix = " NOT VALID" if validated else ""
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    self.ident, sql.Identifier(name), sql.SQL(definition + suffix)
                )
            )
            conn.commit()
            if validated:
                conn.execute(
                    sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.ident, sql.Identifier(name))
                )
                conn.commit()
        conn.execute(sql.SQL("ANALYZE {}").format(self.ident))
        conn.commit()

    # -- the swap -------------------------------------------------------------------------------

    def take_place(self, conn: psycopg.Connection[Any], remove_original: Callable[[], object]) -> None:
        """Under the caller's lock: carry everything over, `remove_original()`, move in, rename."""
        oid = self.oid(conn)
        assert oid is not None
        copies = self.copies(conn)  # read before carry_over puts the original's comment on the table
        sequences = carry_over(conn, self.original, self.ident)
        if _acl(conn, self.original) != _acl(conn, oid):
            raise CannotSwap("the grants could not be reproduced exactly on the new table")
        index_comments, constraint_comments = _comments(conn, self.original)
        statistics = _statistics_pairs(conn, self.original, oid)
        remove_original()
        self._move_in(conn)
        self._restore_indexes(conn, copies, index_comments, constraint_comments)
        _restore_statistics(conn, statistics)
        self._attach_sequences(conn, sequences)

    def _move_in(self, conn: psycopg.Connection[Any]) -> None:
        """Into the original's schema, under its name (the original is gone)."""
        schema = self.original_schema
        if self.schema != schema:
            conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(self.ident, sql.Identifier(schema)))
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(schema, self.name), sql.Identifier(self.original_name)
            )
        )

    def _restore_indexes(
        self,
        conn: psycopg.Connection[Any],
        copies: list[IndexCopy],
        index_comments: list[tuple[str, str]],
        constraint_comments: list[tuple[str, str]],
    ) -> None:
        """The indexes under their final names, the replica identity index, the comments rebuilds lost."""
        schema, target = self.original_schema, self.original_ident
        for copy in copies:
            if copy.name != copy.final_name:
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(schema, copy.name), sql.Identifier(copy.final_name)
                    )
                )
            if copy.replica_identity:
                conn.execute(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                        target, sql.Identifier(copy.final_name)
                    )
                )
        for index, comment in index_comments:
            conn.execute(
                sql.SQL("COMMENT ON INDEX {} IS {}").format(
                    sql.Identifier(schema, index), sql.Literal(comment)
                )
            )
        for constraint, comment in constraint_comments:
            conn.execute(
                sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                    sql.Identifier(constraint), target, sql.Literal(comment)
                )
            )

    def _attach_sequences(self, conn: psycopg.Connection[Any], sequences: SequenceMoves) -> None:
        """Identity sequences take the original's names; serial sequences belong to the new table."""
        schema, target = self.original_schema, self.original_ident
        for new_seq, old_name in sequences.identity_renames:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                    sql.Identifier(schema, new_seq), sql.Identifier(old_name)
                )
            )
        for sequence, column in sequences.serial_owners:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                    sql.SQL(sequence), target, sql.Identifier(column)
                )
            )

    def copies(self, conn: psycopg.Connection[Any]) -> list[IndexCopy]:
        row = conn.execute("SELECT obj_description(%s::oid, 'pg_class')", (self.oid(conn),)).fetchone()
        text = row[0] if row else None
        if not text or not text.startswith("["):
            return []
        return [IndexCopy(**item) for item in json.loads(text)]


StatisticsPairs = list[tuple[tuple[str, str], tuple[str, str, int, str | None]]]


def _restore_statistics(conn: psycopg.Connection[Any], statistics: StatisticsPairs) -> None:
    """The new table's extended statistics under the originals' schemas, names, targets and comments."""
    for (new_schema, new_name), (stat_schema, name, stat_target, stat_comment) in statistics:
        if new_schema != stat_schema:
            conn.execute(
                sql.SQL("ALTER STATISTICS {} SET SCHEMA {}").format(
                    sql.Identifier(new_schema, new_name), sql.Identifier(stat_schema)
                )
            )
        conn.execute(
            sql.SQL("ALTER STATISTICS {} RENAME TO {}").format(
                sql.Identifier(stat_schema, new_name), sql.Identifier(name)
            )
        )
        final = sql.Identifier(stat_schema, name)
        if stat_target >= 0:
            conn.execute(
                sql.SQL("ALTER STATISTICS {} SET STATISTICS {}").format(final, sql.Literal(stat_target))
            )
        if stat_comment is not None:
            conn.execute(sql.SQL("COMMENT ON STATISTICS {} IS {}").format(final, sql.Literal(stat_comment)))


def create_like(
    conn: psycopg.Connection[Any], original: int, original_ident: sql.Identifier, table: sql.Identifier
) -> None:
    """A table built like `original`: columns, defaults, CHECK and NOT NULL constraints, identity,
    generated columns, storage, compression, comments, extended statistics, storage parameters and
    persistence. Indexes come with it; the caller decides when they are built."""
    persistence, reloptions = conn.execute(
        "SELECT relpersistence, coalesce(reloptions, '{}') FROM pg_class WHERE oid = %s", (original,)
    ).fetchone() or ("p", [])
    conn.execute(
        sql.SQL("CREATE {}TABLE {} (LIKE {} INCLUDING ALL)").format(
            sql.SQL("UNLOGGED " if persistence == "u" else ""), table, original_ident
        )
    )
    if reloptions:
        conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(table, options(reloptions)))


def _deferral(copy: IndexCopy) -> str:
    if not copy.deferrable:
        return ""
    return " DEFERRABLE INITIALLY DEFERRED" if copy.deferred else " DEFERRABLE"


def _acl(conn: psycopg.Connection[Any], oid: int) -> list[str]:
    """The table's and its columns' privileges, comparable between two tables."""
    row = conn.execute(
        "SELECT array(SELECT x::text FROM pg_class c, unnest(c.relacl) x WHERE c.oid = %(oid)s "
        "UNION ALL SELECT a.attname || ':' || x::text FROM pg_attribute a, unnest(a.attacl) x "
        "WHERE a.attrelid = %(oid)s ORDER BY 1)",
        {"oid": oid},
    ).fetchone()
    return list(row[0]) if row else []


def _comments(conn: psycopg.Connection[Any], oid: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The comments on the table's indexes and constraints (rebuilt ones lose theirs)."""
    indexes = conn.execute(
        "SELECT c.relname, d.description FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0 "
        "WHERE i.indrelid = %s",
        (oid,),
    ).fetchall()
    constraints = conn.execute(
        "SELECT con.conname, d.description FROM pg_constraint con JOIN pg_description d "
        "ON d.objoid = con.oid AND d.classoid = 'pg_constraint'::regclass WHERE con.conrelid = %s",
        (oid,),
    ).fetchall()
    return [tuple(r) for r in indexes], [tuple(r) for r in constraints]


def _statistics_pairs(
    conn: psycopg.Connection[Any], dest_oid: int, new_oid: int
) -> list[tuple[tuple[str, str], tuple[str, str, int, str | None]]]:
    """The new table's extended statistics (LIKE named them anew) paired with the originals by shape."""
    query = (
        "SELECT n.nspname, s.stxname, pg_get_statisticsobjdef_columns(s.oid), s.stxkind::text, "
        "s.stxstattarget, obj_description(s.oid, 'pg_statistic_ext') "
        "FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = %s ORDER BY s.oid"
    )
    originals = conn.execute(query, (dest_oid,)).fetchall()
    pairs = []
    for schema, name, columns, kinds, _, _ in conn.execute(query, (new_oid,)).fetchall():
        twin = next((o for o in originals if (o[2], o[3]) == (columns, kinds)), None)
        if twin is None:
            raise CannotSwap(f"extended statistics {name} have no twin on the destination")
        originals.remove(twin)
        pairs.append(((schema, name), (twin[0], twin[1], int(twin[4]), twin[5])))
    return pairs


def _index_names(conn: psycopg.Connection[Any], oid: int) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s",
        (oid,),
    ).fetchall()
    return {r[0] for r in rows}

"""Full refresh by swap: load a new table, index it, rename it in place of the destination.

Each row is written once (no staging table, no index maintained row by row): the new table is
created `LIKE` the destination with everything but its indexes, the chunks COPY into it (logged
like the destination, so a crash loses nothing; an UNLOGGED destination's new table is counted
against the checkpoints before the swap, as the staged path's stage is), then the indexes are
built in one pass each, constraints and foreign keys added, ANALYZE run, and one short transaction
under `lock_timeout` swaps it in: owner, grants, comments, policies, sequences, replica identity and
statistics targets are carried over, the old table dropped, the new one renamed. Readers see the old
rows or the new ones, never an empty or half-loaded table. If the swap finds something it cannot
keep (created since the transfer chose this path), the rows go in the staged way from the new table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql

from etl_platform.locking import with_lock_retries
from etl_platform.transfer import swap_catalog
from etl_platform.transfer.plan import TransferPlan
from etl_platform.transfer.progress import LoggerLike
from etl_platform.transfer.staged import check_unlogged_rows, replace_rows
from etl_platform.transfer.swap_catalog import IndexCopy
from etl_platform.transfer.writers import ChunkWriter, discard_work_tables, row_count, work_table

_INDEX_BUILD_MEMORY = "256MB"  # maintenance_work_mem for the index builds: sorts in memory, not on disk


class _CannotSwap(Exception):
    """Something depending on the destination appeared after the plan; the swap is abandoned."""


class SwapWriter(ChunkWriter):
    keeps_checkpoint = False
    strategy = "swap"

    def __init__(
        self,
        plan: TransferPlan,
        checkpoint_schema: str,
        transfer_id: str,
        *,
        lock_timeout: str,
        logger: LoggerLike,
    ):
        super().__init__(plan, checkpoint_schema, transfer_id)
        self.transfer_id = transfer_id
        self.new = work_table(checkpoint_schema, transfer_id, "swap")
        self.schema, self.name = self.new._obj
        self.lock_timeout = lock_timeout
        self.log = logger
        self.note = "the new rows were loaded into a fresh table and swapped in"

    # -- load ---------------------------------------------------------------------------------

    def prepare(self, conn: psycopg.Connection[Any], columns: tuple[str, ...] | None) -> None:
        if self._new_oid(conn) is not None:  # a resumed attempt keeps what is loaded
            conn.commit()
            return
        with conn.transaction():
            create_like(conn, self.plan, self.new)
            new_oid = self._new_oid(conn)
            assert new_oid is not None
            for _, new_sequence, old_sequence in _identity_sequences(
                conn, self.plan.destination.oid, new_oid
            ):
                # rows the load numbers continue the destination's sequence, as the staged INSERT's would
                continue_sequence(conn, new_sequence, old_sequence)
            copies = swap_catalog.index_copies(conn, self.plan.destination.oid, new_oid)
            for copy in copies:  # built after the load, in one pass each
                if copy.constraint:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                            self.new, sql.Identifier(copy.name)
                        )
                    )
                else:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(self.schema, copy.name)))
            # The pending index builds live in the new table's comment: they survive a crash with it.
            conn.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    self.new, sql.Literal(json.dumps([c.as_json() for c in copies]))
                )
            )
        conn.commit()  # the streams' own connections COPY into it

    def target(self) -> sql.Composable:
        return self.new

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        discard_work_tables(conn, self.schema, self.transfer_id)

    def before_finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        """Indexes, constraints, foreign keys and statistics, each committed (a crash resumes here)."""
        new_oid = self._new_oid(conn)
        assert new_oid is not None, f"{self.schema}.{self.name} vanished"
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(_INDEX_BUILD_MEMORY)))
        existing = _index_names(conn, new_oid)
        for copy in self._copies(conn):
            if copy.name in existing:
                continue
            if copy.contype == "x":
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        self.new, sql.Identifier(copy.name), sql.SQL(copy.constraint_ddl or "")
                    )
                )
            else:
                conn.execute(sql.SQL(copy.ddl))  # type: ignore[arg-type]  # the server's own text
                if copy.contype in ("p", "u"):
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
                            self.new,
                            sql.Identifier(copy.name),
                            sql.SQL("PRIMARY KEY" if copy.contype == "p" else "UNIQUE"),
                            sql.Identifier(copy.name),
                            sql.SQL(_deferral(copy)),
                        )
                    )
            conn.commit()
        conn.execute("RESET maintenance_work_mem")
        present = {r[0] for r in conn.execute(swap_catalog.OUTBOUND_FKS, {"oid": new_oid}).fetchall()}
        for name, definition, validated in conn.execute(
            swap_catalog.OUTBOUND_FKS, {"oid": self.plan.destination.oid}
        ).fetchall():
            if name in present:
                continue
            # NOT VALID first (a brief lock on the referenced table), then VALIDATE, which lets its
            # writers go on while the new rows are checked.
            suffix = " NOT VALID" if validated else ""
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    self.new, sql.Identifier(name), sql.SQL(definition + suffix)
                )
            )
            conn.commit()
            if validated:
                conn.execute(
                    sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.new, sql.Identifier(name))
                )
                conn.commit()
        conn.execute(sql.SQL("ANALYZE {}").format(self.new))
        conn.commit()

    # -- swap ---------------------------------------------------------------------------------

    def finalize(self, conn: psycopg.Connection[Any], staged_rows: int) -> None:
        def retry(attempt: int, delay: float, exc: psycopg.Error) -> None:
            self.log.warning(
                "swap into %s: %s; retry %d in %.1f s",
                self.plan.destination.label,
                exc.diag.message_primary,
                attempt,
                delay,
            )

        if self._unlogged(conn):  # as the staged path's stage: a server crash empties it
            check_unlogged_rows(conn, self.plan, self.new, row_count(conn, self.new), staged_rows)
        try:
            with_lock_retries(conn, self.lock_timeout, lambda: self._swap(conn), on_retry=retry)
        except (_CannotSwap, errors.DependentObjectsStillExist) as exc:
            reason = exc.diag.message_detail if isinstance(exc, psycopg.Error) else str(exc)
            self.strategy = "staged"
            self.note = f"swap abandoned at the last step, rows replaced in place instead: {reason}"
            self.log.warning("%s: %s", self.plan.destination.label, self.note)
            replace_rows(conn, self.plan, self.new, _insertable(self.plan))
            conn.execute(sql.SQL("DROP TABLE {}").format(self.new))

    def _swap(self, conn: psycopg.Connection[Any]) -> None:
        dest = self.plan.destination
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(dest.ident))
        reasons = swap_catalog.blockers(conn, dest.oid)
        if reasons:
            raise _CannotSwap("; ".join(reasons))
        new_oid = self._new_oid(conn)
        assert new_oid is not None
        copies = self._copies(conn)  # read before carry_over puts the destination's comment on the table
        sequences = carry_over(conn, dest.oid, self.new)
        if _acl(conn, dest.oid) != _acl(conn, new_oid):
            raise _CannotSwap("the grants could not be reproduced exactly on the new table")
        index_comments, constraint_comments = _comments(conn, dest.oid)
        statistics = _statistics_pairs(conn, dest.oid, new_oid)
        conn.execute(sql.SQL("DROP TABLE {}").format(dest.ident))
        if self.schema != dest.schema:
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(self.new, sql.Identifier(dest.schema))
            )
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(dest.schema, self.name), sql.Identifier(dest.name)
            )
        )
        for copy in copies:
            if copy.name != copy.final_name:
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(dest.schema, copy.name), sql.Identifier(copy.final_name)
                    )
                )
            if copy.replica_identity:
                conn.execute(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                        dest.ident, sql.Identifier(copy.final_name)
                    )
                )
        for index, comment in index_comments:
            conn.execute(
                sql.SQL("COMMENT ON INDEX {} IS {}").format(
                    sql.Identifier(dest.schema, index), sql.Literal(comment)
                )
            )
        for constraint, comment in constraint_comments:
            conn.execute(
                sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                    sql.Identifier(constraint), dest.ident, sql.Literal(comment)
                )
            )
        for (new_schema, new_name), (schema, name, target, stat_comment) in statistics:
            moved = sql.Identifier(schema, new_name)
            if new_schema != schema:
                conn.execute(
                    sql.SQL("ALTER STATISTICS {} SET SCHEMA {}").format(
                        sql.Identifier(new_schema, new_name), sql.Identifier(schema)
                    )
                )
            conn.execute(sql.SQL("ALTER STATISTICS {} RENAME TO {}").format(moved, sql.Identifier(name)))
            final = sql.Identifier(schema, name)
            if target >= 0:
                conn.execute(
                    sql.SQL("ALTER STATISTICS {} SET STATISTICS {}").format(final, sql.Literal(target))
                )
            if stat_comment is not None:
                conn.execute(
                    sql.SQL("COMMENT ON STATISTICS {} IS {}").format(final, sql.Literal(stat_comment))
                )
        for new_seq, old_name in sequences.identity_renames:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                    sql.Identifier(dest.schema, new_seq), sql.Identifier(old_name)
                )
            )
        for sequence, column in sequences.serial_owners:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                    sql.SQL(sequence), dest.ident, sql.Identifier(column)
                )
            )

    # -- helpers ------------------------------------------------------------------------------

    def _new_oid(self, conn: psycopg.Connection[Any]) -> int | None:
        row = conn.execute(
            "SELECT to_regclass(%s)::oid", (sql.Identifier(self.schema, self.name).as_string(conn),)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _unlogged(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT relpersistence = 'u' FROM pg_class WHERE oid = %s", (self._new_oid(conn),)
        ).fetchone()
        return bool(row and row[0])

    def _copies(self, conn: psycopg.Connection[Any]) -> list[IndexCopy]:
        row = conn.execute("SELECT obj_description(%s::oid, 'pg_class')", (self._new_oid(conn),)).fetchone()
        text = row[0] if row else None
        if not text or not text.startswith("["):
            return []
        return [IndexCopy(**item) for item in json.loads(text)]


def create_like(conn: psycopg.Connection[Any], plan: TransferPlan, table: sql.Identifier) -> None:
    """A table built like the destination: columns, defaults, CHECK and NOT NULL constraints,
    identity, generated columns, storage, compression, comments, extended statistics, storage
    parameters and persistence. Indexes come with it; the caller decides when they are built."""
    dest = plan.destination
    persistence, options = conn.execute(
        "SELECT relpersistence, coalesce(reloptions, '{}') FROM pg_class WHERE oid = %s", (dest.oid,)
    ).fetchone() or ("p", [])
    conn.execute(
        sql.SQL("CREATE {}TABLE {} (LIKE {} INCLUDING ALL)").format(
            sql.SQL("UNLOGGED " if persistence == "u" else ""), table, dest.ident
        )
    )
    if options:
        conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(table, _options(options)))


def carry_over(conn: psycopg.Connection[Any], dest_oid: int, new: sql.Identifier) -> SequenceMoves:
    """Owner, grants, comments, row security, column settings and sequences, from the destination
    onto the new table; returns what the sequences need once the old table is gone."""
    owner, comment, rls, force_rls, replident, _ = conn.execute(
        swap_catalog.TABLE_META, {"oid": dest_oid}
    ).fetchone() or ("", None, False, False, "d", [])
    conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(new, sql.Identifier(owner)))
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(comment)))
    for column, grantee, privilege, grantable in conn.execute(
        swap_catalog.GRANTS, {"oid": dest_oid}
    ).fetchall():
        conn.execute(
            sql.SQL("GRANT {}{} ON {} TO {}{}").format(
                sql.SQL(privilege),  # type: ignore[arg-type]  # one of PostgreSQL's privilege keywords
                sql.SQL(" ({})").format(sql.Identifier(column)) if column else sql.SQL(""),
                new,
                sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
    if rls:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new))
    if force_rls:
        conn.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new))
    for name, permissive, cmd, roles, qual, check in conn.execute(
        swap_catalog.POLICIES, {"oid": dest_oid}
    ).fetchall():
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}{}{}").format(
                sql.Identifier(name),
                new,
                sql.SQL("PERMISSIVE" if permissive else "RESTRICTIVE"),
                sql.SQL(_POLICY_COMMANDS[cmd]),
                sql.SQL(", ").join(sql.Identifier(r) if r else sql.SQL("PUBLIC") for r in roles),
                sql.SQL(" USING ({})").format(sql.SQL(qual)) if qual else sql.SQL(""),
                sql.SQL(" WITH CHECK ({})").format(sql.SQL(check)) if check else sql.SQL(""),
            )
        )
    moves = SequenceMoves([], [])
    new_columns = {
        r[0]: r for r in conn.execute(swap_catalog.COLUMN_META, {"oid": _oid(conn, new)}).fetchall()
    }
    for name, col_comment, stattarget, attoptions, sequence, identity, sequence_name in conn.execute(
        swap_catalog.COLUMN_META, {"oid": dest_oid}
    ).fetchall():
        column = sql.Identifier(name)
        conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(new, column, sql.Literal(col_comment)))
        if stattarget >= 0:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                    new, column, sql.Literal(stattarget)
                )
            )
        attoptions = [o for o in attoptions if o.split("=", 1)[0] in _COLUMN_OPTIONS]
        if attoptions:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET ({})").format(new, column, _options(attoptions))
            )
        if sequence and not identity:
            # serial: the sequence (its value, grants, name) stays; loose while the old table is
            # dropped, owned by the new one once it stands in the same schema
            conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY NONE").format(sql.SQL(sequence)))
            moves.serial_owners.append((sequence, name))
        elif sequence:  # identity: the new table's own sequence, already past every loaded row
            new_sequence = new_columns[name][4]
            continue_sequence(conn, new_sequence, sequence)
            moves.identity_renames.append((new_columns[name][6], sequence_name))
    if replident in ("f", "n"):
        conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                new, sql.SQL("FULL" if replident == "f" else "NOTHING")
            )
        )
    return moves


@dataclass
class SequenceMoves:
    """What happens to sequences once the old table is gone."""

    identity_renames: list[tuple[str, str]]  # (the new table's identity sequence, the old one's name)
    serial_owners: list[tuple[str, str]]  # (serial sequence, column) to attach to the new table


def continue_sequence(conn: psycopg.Connection[Any], sequence: str, after: str) -> None:
    """Moves `sequence` forward to where `after` stands, never back (both as regclass text)."""
    conn.execute(
        sql.SQL(
            "SELECT setval({new}, greatest(n.last_value, o.last_value), "
            "CASE WHEN o.last_value > n.last_value THEN o.is_called ELSE n.is_called END) "
            "FROM {new_seq} n, {old_seq} o"
        ).format(new=sql.Literal(sequence), new_seq=sql.SQL(sequence), old_seq=sql.SQL(after))  # type: ignore[arg-type]
    )


def _identity_sequences(
    conn: psycopg.Connection[Any], dest_oid: int, new_oid: int
) -> list[tuple[str, str, str]]:
    old = {r[0]: r for r in conn.execute(swap_catalog.COLUMN_META, {"oid": dest_oid}).fetchall()}
    return [
        (name, r[4], old[name][4])
        for name, r in (
            (r[0], r) for r in conn.execute(swap_catalog.COLUMN_META, {"oid": new_oid}).fetchall()
        )
        if r[5] and r[4] and name in old and old[name][4]
    ]


# The per-column options ALTER TABLE ... ALTER COLUMN SET accepts (the server may keep others of its own).
_COLUMN_OPTIONS = {"n_distinct", "n_distinct_inherited"}
_POLICY_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _deferral(copy: IndexCopy) -> str:
    if not copy.deferrable:
        return ""
    return " DEFERRABLE INITIALLY DEFERRED" if copy.deferred else " DEFERRABLE"


def _options(options: list[str]) -> sql.Composable:
    """Storage parameters as PostgreSQL lists them (`fillfactor=70`), back into `fillfactor = '70'`."""
    pairs = [o.split("=", 1) for o in options]
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.SQL(key), sql.Literal(value))  # type: ignore[arg-type]
        for key, value in pairs
    )


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
            raise _CannotSwap(f"extended statistics {name} have no twin on the destination")
        originals.remove(twin)
        pairs.append(((schema, name), (twin[0], twin[1], int(twin[4]), twin[5])))
    return pairs


def _index_names(conn: psycopg.Connection[Any], oid: int) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s",
        (oid,),
    ).fetchall()
    return {r[0] for r in rows}


def _oid(conn: psycopg.Connection[Any], table: sql.Identifier) -> int:
    row = conn.execute("SELECT %s::regclass::oid", (table.as_string(conn),)).fetchone()
    assert row is not None
    return int(row[0])


def _insertable(plan: TransferPlan) -> tuple[str, ...]:
    return tuple(c.name for c in plan.destination.columns if not c.generated)

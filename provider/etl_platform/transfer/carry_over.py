"""What a new table takes over from the table it replaces: owner, grants, comments, row security and
policies, column settings, replica identity, and the sequences (serial ones move over, identity ones
continue where the original's stand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.transfer import swap_catalog


def carry_over(conn: psycopg.Connection[Any], dest_oid: int, new: sql.Identifier) -> SequenceMoves:
    """Owner, grants, comments, row security, column settings and sequences, from the destination
    onto the new table; returns what the sequences need once the old table is gone."""
    owner, comment, rls, force_rls, replident, _ = conn.execute(
        swap_catalog.TABLE_META, {"oid": dest_oid}
    ).fetchone() or ("", None, False, False, "d", [])
    _table_settings(conn, dest_oid, new, owner, comment)
    _row_security(conn, dest_oid, new, rls, force_rls)
    moves = _columns(conn, dest_oid, new)
    if replident in ("f", "n"):
        conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                new, sql.SQL("FULL" if replident == "f" else "NOTHING")
            )
        )
    return moves


def _table_settings(
    conn: psycopg.Connection[Any], dest_oid: int, new: sql.Identifier, owner: str, comment: str | None
) -> None:
    """Owner, comment and grants (the table's and its columns')."""
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


def _row_security(
    conn: psycopg.Connection[Any], dest_oid: int, new: sql.Identifier, rls: bool, force_rls: bool
) -> None:
    """Row level security as the destination has it, and its policies."""
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


def _columns(conn: psycopg.Connection[Any], dest_oid: int, new: sql.Identifier) -> SequenceMoves:
    """Column comments, statistics targets and options; the sequences' moves for after the swap."""
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
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET ({})").format(new, column, options(attoptions))
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


def identity_sequences(
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


def options(options: list[str]) -> sql.Composable:
    """Storage parameters as PostgreSQL lists them (`fillfactor=70`), back into `fillfactor = '70'`."""
    pairs = [o.split("=", 1) for o in options]
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.SQL(key), sql.Literal(value))  # type: ignore[arg-type]
        for key, value in pairs
    )


def _oid(conn: psycopg.Connection[Any], table: sql.Identifier) -> int:
    row = conn.execute("SELECT %s::regclass::oid", (table.as_string(conn),)).fetchone()
    assert row is not None
    return int(row[0])

"""What a table swap must carry over, and what it cannot: read from pg_catalog.

The swap replaces the destination by a new table under the same name. Things that point at the old
table by OID (views, other tables' foreign keys, SQL function bodies, columns of its row type) would
be dropped with it, and some behaviour (row triggers, logical replication, rules, inheritance) would
silently change; those are `blockers`, and the transfer takes the staged path instead, naming them.
Everything else (indexes, constraints, grants, owner, comments, policies, sequences, replica identity,
statistics targets, storage options) is read here and re-created on the new table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The table's own parts (constraints, defaults, policies, indexes, statistics) come with it; its own
# triggers and rules are judged separately. Each: the catalog and its column naming the table.
_OWN_PARTS = (
    ("pg_constraint", "conrelid"),
    ("pg_attrdef", "adrelid"),
    ("pg_policy", "polrelid"),
    ("pg_trigger", "tgrelid"),
    ("pg_rewrite", "ev_class"),
    ("pg_statistic_ext", "stxrelid"),
)
_NOT_OWN_PART = sql.SQL(
    "AND NOT EXISTS (SELECT 1 FROM {catalog} WHERE d.classid = {name}::regclass\n"
    "                  AND oid = d.objid AND {owner} = %(oid)s)"
)

# Normal dependencies on the table or its row type: the swap would have to drop these.
_DEPENDENTS = sql.SQL("""
SELECT DISTINCT coalesce(
    -- a view or materialized view depends through its rewrite rule: name the view
    (SELECT pg_describe_object('pg_class'::regclass, r.ev_class, 0) FROM pg_rewrite r
     WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid AND r.rulename = '_RETURN'),
    pg_describe_object(d.classid, d.objid, d.objsubid))
FROM pg_depend d
WHERE d.deptype = 'n'
  AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s)
       OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = (SELECT reltype FROM pg_class WHERE oid = %(oid)s)))
  {own_parts}
  AND NOT EXISTS (SELECT 1 FROM pg_index WHERE d.classid = 'pg_class'::regclass
                  AND indexrelid = d.objid AND indrelid = %(oid)s)
ORDER BY 1
""").format(
    own_parts=sql.SQL("\n  ").join(
        _NOT_OWN_PART.format(
            catalog=sql.Identifier("pg_catalog", name), name=sql.Literal(name), owner=sql.Identifier(owner)
        )
        for name, owner in _OWN_PARTS
    )
)

_TABLE_FACTS = """
SELECT c.relkind, c.relispartition, c.relpersistence, c.reloftype <> 0,
       c.reltablespace <> 0 OR EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                        WHERE i.indrelid = c.oid AND ic.reltablespace <> 0),
       EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid),
       pg_has_role(current_user, c.relowner, 'USAGE'),
       has_schema_privilege(n.nspname, 'CREATE'),
       EXISTS (SELECT 1 FROM pg_seclabel WHERE classoid = 'pg_class'::regclass AND objoid = c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %(oid)s
"""

_SELF_REFERENCE = (
    "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND conrelid = %(oid)s AND confrelid = %(oid)s"
)
_TRIGGERS = "SELECT tgname FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal ORDER BY 1"
_RULES = "SELECT rulename FROM pg_rewrite WHERE ev_class = %(oid)s AND rulename <> '_RETURN' ORDER BY 1"
_PUBLICATIONS = """
SELECT p.pubname FROM pg_publication p
WHERE p.puballtables
   OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = %(oid)s)
   OR EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_class c ON c.relnamespace = pn.pnnspid
              WHERE pn.pnpubid = p.oid AND c.oid = %(oid)s)
ORDER BY 1
"""
# Foreign keys of other tables that reference this one, and what a DELETE of a parent row does to them.
INBOUND_FKS = """
SELECT con.conname, n.nspname, c.relname, con.confdeltype, con.condeferrable
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.confrelid = %(oid)s AND con.conrelid <> %(oid)s
ORDER BY 1
"""


def blockers(
    conn: psycopg.Connection[Any], oid: int, *, replaced: bool = True, as_partition: bool = False
) -> list[str]:
    """Why a swap would lose or change something, one reason each; empty when it may swap.

    `replaced=False`: the table stays (a partitioned parent whose partitions are exchanged), so
    only what its new rows would bypass counts. `as_partition`: a partition exchanged as such.
    """
    params = {"oid": oid}
    facts = conn.execute(_TABLE_FACTS, params).fetchone()
    assert facts is not None
    kind, is_partition, _, typed, tablespace, inherits, owner_ok, create_ok, labelled = facts
    reasons: list[str] = []
    if kind == "p" and replaced:
        reasons.append("it is partitioned (each partition would need its own swap)")
    if is_partition and not as_partition:
        reasons.append("it is a partition of another table (a swap would detach it)")
    if inherits and not (as_partition or kind == "p"):
        reasons.append("it takes part in table inheritance")
    if typed:
        reasons.append("it is a typed table (CREATE TABLE OF)")
    if tablespace:
        reasons.append("it or one of its indexes lives in a non-default tablespace")
    if labelled:
        reasons.append("it has security labels")
    if not owner_ok:
        reasons.append("the transfer's role cannot act as the table's owner (needed to drop and replace it)")
    if not create_ok:
        reasons.append("the transfer's role has no CREATE privilege on the table's schema")
    if replaced:
        for (what,) in conn.execute(_DEPENDENTS, params).fetchall():
            reasons.append(f"{what} depends on it (it would be dropped with the old table)")
    else:
        for key in inbound_foreign_keys(conn, oid):
            reasons.append(f"foreign key {key.name} of {key.schema}.{key.table} references it")
    if conn.execute(_SELF_REFERENCE, params).fetchone():
        reasons.append("a foreign key of it references itself (it would point at the old table)")
    triggers = [r[0] for r in conn.execute(_TRIGGERS, params).fetchall()]
    if triggers:
        reasons.append(f"triggers {', '.join(triggers)} must fire for the new rows")
    rules = [r[0] for r in conn.execute(_RULES, params).fetchall()]
    if rules:
        reasons.append(f"rules {', '.join(rules)} rewrite writes to it")
    pubs = [r[0] for r in conn.execute(_PUBLICATIONS, params).fetchall()]
    if pubs:
        reasons.append(
            f"publications {', '.join(pubs)} replicate it (subscribers would never see the new rows)"
        )
    return reasons


@dataclass(frozen=True)
class InboundKey:
    name: str
    schema: str
    table: str
    on_delete: str  # pg_constraint.confdeltype: a no action, r restrict, c cascade, n set null, d set default
    deferrable: bool


def inbound_foreign_keys(conn: psycopg.Connection[Any], oid: int) -> list[InboundKey]:
    return [InboundKey(*row) for row in conn.execute(INBOUND_FKS, {"oid": oid}).fetchall()]


# -- what the new table gets ------------------------------------------------------------------------

# An index's shape, the same for the destination's index and its copy on the new table.
_INDEXES = """
SELECT ic.relname, i.indisunique, i.indisprimary, i.indisexclusion, i.indkey::text, i.indclass::text,
       i.indcollation::text, i.indoption::text, ic.relam, pg_get_expr(i.indexprs, i.indrelid),
       pg_get_expr(i.indpred, i.indrelid), pg_get_indexdef(i.indexrelid),
       con.conname, con.contype, con.condeferrable, con.condeferred, pg_get_constraintdef(con.oid),
       i.indisreplident
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
     AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %(oid)s
ORDER BY ic.oid
"""


@dataclass(frozen=True)
class IndexCopy:
    """One index to build on the new table after the load, and the name it takes at the swap."""

    name: str  # the name on the new table until the swap
    final_name: str  # the destination's index name
    ddl: str  # pg_get_indexdef of the copy (the server's own text for the new table)
    constraint: str | None  # the constraint it backs (name), if any
    contype: str | None  # p, u, x
    deferrable: bool
    deferred: bool
    constraint_ddl: str | None  # pg_get_constraintdef, for exclusion constraints
    replica_identity: bool

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def index_copies(conn: psycopg.Connection[Any], dest_oid: int, new_oid: int) -> list[IndexCopy]:
    """Pairs every index LIKE ... INCLUDING INDEXES made on the new table with the original by shape.

    Raises ValueError when an index has no twin, so the caller falls back instead of guessing.
    """
    originals = conn.execute(_INDEXES, {"oid": dest_oid}).fetchall()
    copies = conn.execute(_INDEXES, {"oid": new_oid}).fetchall()
    unmatched = list(originals)
    result = []
    for copy in copies:
        twin = next((o for o in unmatched if _shape(o) == _shape(copy)), None)
        if twin is None:
            raise ValueError(f"index {copy[0]} has no twin on the destination")
        unmatched.remove(twin)
        result.append(
            IndexCopy(
                name=copy[0],
                final_name=twin[0],
                ddl=copy[11],
                constraint=twin[12],
                contype=twin[13],
                deferrable=bool(twin[14]),
                deferred=bool(twin[15]),
                constraint_ddl=copy[16],
                replica_identity=bool(twin[17]),
            )
        )
    if unmatched:
        raise ValueError(f"indexes {[o[0] for o in unmatched]} were not copied")
    return result


def _shape(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*row[1:11], row[13], row[14], row[15])


# Outbound foreign keys: re-added on the new table after the load.
OUTBOUND_FKS = """
SELECT con.conname, pg_get_constraintdef(con.oid), con.convalidated
FROM pg_constraint con WHERE con.contype = 'f' AND con.conrelid = %(oid)s ORDER BY 1
"""

# The table-level facts copied at the swap.
TABLE_META = """
SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'), c.relrowsecurity,
       c.relforcerowsecurity, c.relreplident, coalesce(c.reloptions, '{}')
FROM pg_class c WHERE c.oid = %(oid)s
"""
COLUMN_META = """
SELECT a.attname, col_description(a.attrelid, a.attnum), a.attstattarget, coalesce(a.attoptions, '{}'),
       pg_get_serial_sequence(a.attrelid::regclass::text, a.attname), a.attidentity,
       (SELECT s.relname FROM pg_class s
        WHERE s.oid = pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)::regclass)
FROM pg_attribute a WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
# Grants, one privilege per row; column grants carry the column.
GRANTS = """
SELECT NULL::name, CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END,
       g.privilege_type, g.is_grantable
FROM pg_class c, aclexplode(c.relacl) g WHERE c.oid = %(oid)s AND g.grantee <> c.relowner
UNION ALL
SELECT a.attname, CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END,
       g.privilege_type, g.is_grantable
FROM pg_attribute a, aclexplode(a.attacl) g WHERE a.attrelid = %(oid)s AND a.attacl IS NOT NULL
"""
POLICIES = """
SELECT pol.polname, pol.polpermissive, pol.polcmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r) END FROM unnest(pol.polroles) r),
       pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)
FROM pg_policy pol WHERE pol.polrelid = %(oid)s ORDER BY 1
"""

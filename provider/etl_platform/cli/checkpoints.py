"""`airflow etl checkpoints list|clear`: what a retried or cleared transfer will resume from.

A checkpoint belongs to one transfer id, `dag_id/task_id/run_id/map_index` for the operator
(`transfer/checkpoint.py` keeps one row per key range). `clear` refuses while the transfer may be
running, decided three ways: the Airflow metadata DB says its task instance is live (operator ids);
an unfinished checkpoint committed a chunk less than --idle-seconds ago (a running transfer commits
one every few seconds; a killed one stops); a chunk holds the rows' locks at the moment of the delete.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl_platform.cli.common import CliError, connect, database_error, emit, fail

LIVE_STATES = ("running", "queued", "scheduled", "deferred", "up_for_reschedule", "restarting")


@dataclass(frozen=True)
class TransferKey:
    """The parts of an operator's checkpoint id; None parts for a free-form run_transfer id."""

    transfer_id: str
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None

    @classmethod
    def parse(cls, transfer_id: str) -> TransferKey:
        dag_task_run, _, map_index = transfer_id.rpartition("/")
        parts = dag_task_run.split("/", 2)  # dag and task ids have no "/"; a run id may
        if len(parts) == 3 and map_index.lstrip("-").isdigit():
            return cls(transfer_id, parts[0], parts[1], parts[2], int(map_index))
        return cls(transfer_id)


def _table(conn: psycopg.Connection[Any], schema: str) -> sql.Identifier:
    table = sql.Identifier(schema, "transfer_checkpoints")
    row = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)).fetchone()
    if row is None or row[0] is None:
        raise CliError(f"no checkpoint table {schema}.transfer_checkpoints in this database (--schema)")
    return table


def _where(args: argparse.Namespace) -> sql.Composed:
    """The selector as SQL on transfer_id: operator ids split on "/" (dag/task/run/map_index)."""
    clauses: list[sql.Composable] = []
    if args.transfer_id:
        clauses.append(sql.SQL("transfer_id = {}").format(sql.Literal(args.transfer_id)))
    if args.dag_id:
        clauses.append(sql.SQL("split_part(transfer_id, '/', 1) = {}").format(sql.Literal(args.dag_id)))
    if args.task_id:
        clauses.append(sql.SQL("split_part(transfer_id, '/', 2) = {}").format(sql.Literal(args.task_id)))
    if args.run_id:  # between the second "/" and the last one
        clauses.append(
            sql.SQL("substring(transfer_id from '^[^/]*/[^/]*/(.*)/-?[0-9]+$') = {}").format(
                sql.Literal(args.run_id)
            )
        )
    if args.map_index is not None:
        clauses.append(
            sql.SQL("substring(transfer_id from '/(-?[0-9]+)$') = {}").format(
                sql.Literal(str(args.map_index))
            )
        )
    return sql.SQL(" AND ").join(clauses or [sql.SQL("true")])


def _selector(args: argparse.Namespace) -> str:
    named = [
        f"{flag}={value}"
        for flag, value in (
            ("--transfer-id", args.transfer_id),
            ("--dag-id", args.dag_id),
            ("--task-id", args.task_id),
            ("--run-id", args.run_id),
            ("--map-index", args.map_index),
        )
        if value is not None and value != ""
    ]
    return " ".join(named)


def load(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per range, newest transfers first."""
    table = _table(conn, args.schema)
    rows = conn.execute(
        sql.SQL(
            "SELECT transfer_id, part, lo, hi, last_key, done, written, rows, chunks, updated_at, "
            "finished_at, fingerprint FROM {} WHERE {} "
            "ORDER BY max(updated_at) OVER (PARTITION BY transfer_id) DESC, transfer_id, part"
        ).format(table, _where(args))
    ).fetchall()
    conn.commit()
    names = ("transfer_id", "part", "lo", "hi", "last_key", "done", "written", "rows_read", "chunks")
    out = []
    for row in rows:
        item = dict(zip(names, row[:9], strict=True))
        item["updated_at"] = row[9].isoformat() if row[9] else None
        item["finished_at"] = row[10].isoformat() if row[10] else None
        item["fingerprint"] = row[11]
        # what a retry reads next: keys above this (None: the range is done, or starts unbounded)
        item["resume_after"] = (
            None if item["done"] else (item["last_key"] if item["last_key"] is not None else item["lo"])
        )
        out.append(item)
    return out


def list_checkpoints(args: argparse.Namespace) -> None:
    """Every range of the selected checkpoints: the last key it committed, rows written, when."""
    try:
        with connect(args.conn_id) as conn:
            rows = load(conn, args)
    except CliError as exc:
        fail(exc)
    except psycopg.Error as exc:  # permissions, a dropped table meanwhile, ...: one line, no traceback
        fail(database_error(exc))
    if (args.transfer_id or args.dag_id or args.task_id or args.run_id) and not rows:
        fail(CliError(f"no checkpoint matches {_selector(args)} in {args.schema}.transfer_checkpoints"))
    emit(rows, args.output, empty=f"no checkpoints in {args.schema}.transfer_checkpoints")


def task_state(key: TransferKey) -> str | None:
    """The transfer's task instance state in the Airflow metadata DB; None when unknown there."""
    if key.dag_id is None:
        return None
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            state = session.scalar(
                select(TaskInstance.state).where(
                    TaskInstance.dag_id == key.dag_id,
                    TaskInstance.task_id == key.task_id,
                    TaskInstance.run_id == key.run_id,
                    TaskInstance.map_index == key.map_index,
                )
            )
    except Exception:  # no metadata DB reachable from here: the database-side check still runs
        return None
    return str(state) if state is not None else None


def clear_checkpoints(args: argparse.Namespace) -> None:
    """Deletes the selected checkpoints after checking that none of their transfers is running."""
    if not (args.transfer_id or args.dag_id or args.task_id or args.run_id):
        fail(CliError("clear needs a selector: --transfer-id, or --dag-id/--task-id/--run-id"))
    try:
        with connect(args.conn_id) as conn:
            rows = load(conn, args)
            if not rows:
                raise CliError(
                    f"no checkpoint matches {_selector(args)} in {args.schema}.transfer_checkpoints"
                )
            ids = sorted({r["transfer_id"] for r in rows})
            for transfer_id in ids:
                state = task_state(TransferKey.parse(transfer_id))
                if state in LIVE_STATES:
                    raise CliError(f"checkpoint {transfer_id!r}: its task instance is {state}; not cleared")
            _refuse_recent(conn, args.schema, ids, args.idle_seconds)
            if not args.yes:
                _confirm(ids)
            deleted = _delete(conn, args.schema, ids)
    except CliError as exc:
        fail(exc)
    except psycopg.Error as exc:  # permissions, a dropped table meanwhile, ...: one line, no traceback
        fail(database_error(exc))
    print(f"cleared {len(ids)} checkpoint(s), {deleted} range row(s): {', '.join(ids)}")


def _refuse_recent(conn: psycopg.Connection[Any], schema: str, ids: list[str], idle_seconds: float) -> None:
    """An unfinished checkpoint that committed a chunk within idle_seconds belongs to a running transfer."""
    rows = conn.execute(
        sql.SQL(
            "SELECT transfer_id, extract(epoch FROM now() - max(updated_at))::float8 FROM {} "
            "WHERE transfer_id = ANY(%s) GROUP BY transfer_id "
            "HAVING bool_or(finished_at IS NULL) AND max(updated_at) > now() - make_interval(secs => %s)"
        ).format(sql.Identifier(schema, "transfer_checkpoints")),
        (ids, idle_seconds),
    ).fetchall()
    conn.commit()
    if rows:
        transfer_id, age = rows[0]
        raise CliError(
            f"checkpoint {transfer_id!r} committed a chunk {age:.1f} s ago and is unfinished: its transfer "
            f"may be running; not cleared (wait, or lower --idle-seconds from {idle_seconds:g})"
        )


def _confirm(ids: list[str]) -> None:
    question = f"Clear {len(ids)} checkpoint(s) ({', '.join(ids)})? The next run starts over. [y/N] "
    if not sys.stdin.isatty():
        raise CliError(f"not clearing {', '.join(ids)} without confirmation: pass --yes")
    if input(question).strip().lower() not in ("y", "yes"):
        raise CliError("not cleared: not confirmed")


def _delete(conn: psycopg.Connection[Any], schema: str, ids: list[str]) -> int:
    """Locks the rows NOWAIT first: a running transfer holds them while a chunk commits."""
    table = sql.Identifier(schema, "transfer_checkpoints")
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE transfer_id = ANY(%s) FOR UPDATE NOWAIT").format(table),
                (ids,),
            )
            cur = conn.execute(sql.SQL("DELETE FROM {} WHERE transfer_id = ANY(%s)").format(table), (ids,))
            return cur.rowcount
    except psycopg.errors.LockNotAvailable:
        raise CliError(
            f"checkpoint {', '.join(ids)} is locked by a running transfer (a chunk is committing); not cleared"
        ) from None

"""copy_out_blocks against a real PostgreSQL: the blocks are exactly the COPY's bytes, the tail names
the last rows, and a COPY stopped part way or failing leaves the connection usable."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_platform.transfer.copy_out import CopyTail, copy_out_blocks
from etl_platform.transfer.errors import TransferError
from harness import SchemaDb

ROWS = 5000


def _copy(rows: int, copy_format: str = "text", extra: str = "", order: str = "ORDER BY g") -> sql.Composed:
    return sql.SQL(
        "COPY (SELECT g, repeat('x', 20) || g{} FROM generate_series(1, {}) g {}) TO STDOUT (FORMAT {})"
    ).format(sql.SQL(extra), sql.Literal(rows), sql.SQL(order), sql.SQL(copy_format.upper()))


def _messages(conn: psycopg.Connection[Any], query: sql.Composed) -> list[bytes]:
    """The same COPY read through psycopg: one CopyData message per row (binary: plus the trailer)."""
    with conn.cursor().copy(query) as copy:
        return [bytes(data) for data in copy]


@pytest.mark.parametrize("copy_format", ["text", "csv", "binary"])
def test_blocks_are_the_copy_bytes_and_the_tail_names_the_last_rows(
    src_db: SchemaDb, copy_format: str
) -> None:
    with psycopg.connect(src_db.conninfo, autocommit=True) as conn:
        expected = _messages(conn, _copy(ROWS, copy_format))
        tail = CopyTail()
        blocks = list(copy_out_blocks(conn, _copy(ROWS, copy_format), 4096, tail))
        assert b"".join(blocks) == b"".join(expected)
        assert all(len(block) >= 4096 for block in blocks[:-1])
        assert len(blocks[-1]) > 0
        assert tail.rows == ROWS  # from the command tag
        assert (bytes(tail.last), bytes(tail.prev)) == (expected[-1], expected[-2])
        if copy_format == "binary":
            assert tail.last == b"\xff\xff"  # the trailer; the last row is the one before
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_empty_copy_yields_nothing(src_db: SchemaDb) -> None:
    with psycopg.connect(src_db.conninfo, autocommit=True) as conn:
        tail = CopyTail()
        assert list(copy_out_blocks(conn, _copy(0), 4096, tail)) == []
        assert (tail.rows, tail.last, tail.prev) == (0, b"", b"")


def test_a_consumer_stopping_part_way_leaves_the_connection_usable(src_db: SchemaDb) -> None:
    with psycopg.connect(src_db.conninfo) as conn:
        conn.execute("SELECT 1")  # in a transaction, as a reader is on its snapshot
        tail = CopyTail()
        blocks = copy_out_blocks(conn, _copy(50_000), 1024, tail)
        first = next(blocks)
        assert first.startswith(b"1\t")
        blocks.close()  # the rest of the COPY is read and dropped
        assert tail.rows == 0  # it never finished
        assert conn.execute("SELECT count(*) FROM generate_series(1, 3)").fetchone() == (3,)
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_copy_that_does_not_start_fails_naming_the_server_error(src_db: SchemaDb) -> None:
    with psycopg.connect(src_db.conninfo) as conn:
        conn.execute("SELECT 1")
        query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(src_db.schema, "missing"))
        with pytest.raises(TransferError, match=r"COPY TO STDOUT did not start: .*missing.* does not exist"):
            list(copy_out_blocks(conn, query, 4096, CopyTail()))
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_copy_failing_part_way_fails_and_keeps_the_rows_it_read(src_db: SchemaDb) -> None:
    """A row's error after rows were sent (here 1/0 at g = 3000): TransferError with the server's
    message; the tail holds the last rows read before it, and the connection rolls back and goes on."""
    with psycopg.connect(src_db.conninfo) as conn:
        conn.execute("SELECT 1")
        tail = CopyTail()
        query = _copy(ROWS, extra=", 1 / (g - 3000)", order="")  # no sort: rows stream before the error
        read = bytearray()
        with pytest.raises(TransferError, match="division by zero"):
            for block in copy_out_blocks(conn, query, 1024, tail):
                read += block
        assert bytes(read).startswith(b"1\t")
        assert b"\n3000\t" not in bytes(read)
        assert tail.rows == 0
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)

"""Reading the chunk's last key out of a raw COPY row without decoding the rest of the row.

The key column is always first in our SELECT list, so only the first field is parsed.
Keys are kept as PostgreSQL text (what `key::text` would print): JSON-safe for checkpoints and
accepted back as an untyped literal in `key > %s`.
"""

from __future__ import annotations

import struct
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.pq import Format

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER_FIXED = len(BINARY_SIGNATURE) + 4  # signature + flags; then int32 extension length
BINARY_TRAILER = b"\xff\xff"


class KeyReader:
    """Turns the first field of a COPY row into the key's text form."""

    def __init__(self, conn: psycopg.Connection[Any], key_type_oid: int, copy_format: str):
        self.copy_format = copy_format
        self._loader = None
        if copy_format == "binary":
            loader_cls = conn.adapters.get_loader(key_type_oid, Format.BINARY)
            if loader_cls is None:
                raise ValueError(f"no binary loader for key type oid {key_type_oid}")
            self._loader = loader_cls(key_type_oid, conn)

    def key_of(self, row: bytes | memoryview) -> str:
        data = bytes(row)
        if self.copy_format == "binary":
            return self._binary_key(data)
        if self.copy_format == "csv":
            return csv_first_field(data)
        return _text_first_field(data)

    def _binary_key(self, data: bytes) -> str:
        offset = 0
        if data.startswith(BINARY_SIGNATURE):
            (ext_len,) = struct.unpack_from("!i", data, _HEADER_FIXED)
            offset = _HEADER_FIXED + 4 + ext_len
        (length,) = struct.unpack_from("!i", data, offset + 2)  # after int16 field count
        if length < 0:
            raise ValueError("NULL key in source row: key_column must be NOT NULL and unique")
        assert self._loader is not None
        value = self._loader.load(data[offset + 6 : offset + 6 + length])
        return _to_pg_text(value)


def _to_pg_text(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


_TEXT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _text_first_field(data: bytes) -> str:
    """First field of a COPY text row, with COPY's backslash escapes undone."""
    end = data.find(b"\t")
    raw = data[: end if end >= 0 else len(data.rstrip(b"\n"))].decode()
    if raw == "\\N":
        raise ValueError("NULL key in source row: key_column must be NOT NULL and unique")
    if "\\" not in raw:
        return raw
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append(_TEXT_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def csv_first_field(data: bytes) -> str:
    text = data.decode()
    if text.startswith('"'):
        i, out = 1, []
        while i < len(text):
            if text[i] == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                    continue
                break
            out.append(text[i])
            i += 1
        return "".join(out)
    end = text.find(",")
    field = text[: end if end >= 0 else len(text.rstrip("\r\n"))]
    if field == "":
        raise ValueError("NULL key in source row: key_column must be NOT NULL and unique")
    return field

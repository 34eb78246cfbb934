"""Opaque signed page cursors: a client can neither forge nor edit one, nor reuse it under other filters.

A token is base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload)). The payload carries the
last row's keyset values and the fingerprint of the filters it was issued for; the values reach
PostgreSQL only as bind parameters, after the signature and every type have been checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Any

_VERSION = 1
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

CursorValues = tuple[datetime, str, str]


class InvalidCursor(ValueError):
    """The cursor was not issued by us, was edited, or belongs to other filters."""

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid cursor: {why}")
        self.why = why


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise InvalidCursor("bad encoding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("bad encoding") from exc


def _sign(payload: bytes, key: bytes) -> bytes:
    if not key:
        raise ValueError("cursor signing key must not be empty")
    return hmac.new(key, payload, hashlib.sha256).digest()


def encode_cursor(values: CursorValues, filters_fingerprint: str, key: bytes) -> str:
    """Token for the page after the row whose (started_at, pipeline, run_id) is `values`."""
    started_at, pipeline, run_id = values
    if started_at.tzinfo is None:
        raise ValueError("cursor started_at must be timezone-aware")
    body = {"v": _VERSION, "f": filters_fingerprint, "k": [started_at.isoformat(), pipeline, run_id]}
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return f"{_b64encode(payload)}.{_b64encode(_sign(payload, key))}"


def decode_cursor(token: str, filters_fingerprint: str, key: bytes) -> CursorValues:
    """The keyset values of a token we signed for these filters; InvalidCursor otherwise."""
    if not isinstance(token, str) or token.count(".") != 1:
        raise InvalidCursor("bad encoding")
    payload_text, signature_text = token.split(".")
    payload, signature = _b64decode(payload_text), _b64decode(signature_text)
    if not hmac.compare_digest(signature, _sign(payload, key)):
        raise InvalidCursor("bad signature")
    try:
        body: Any = json.loads(payload)
    except ValueError as exc:  # signed by us, so only a key shared with another encoder gets here
        raise InvalidCursor("bad payload") from exc
    if not isinstance(body, dict) or set(body) != {"v", "f", "k"} or body["v"] != _VERSION:
        raise InvalidCursor("bad payload")
    if body["f"] != filters_fingerprint:
        raise InvalidCursor("issued for other filters")
    keys = body["k"]
    if not (isinstance(keys, list) and len(keys) == 3 and all(isinstance(k, str) for k in keys)):
        raise InvalidCursor("bad payload")
    try:
        started_at = datetime.fromisoformat(keys[0])
    except ValueError as exc:
        raise InvalidCursor("bad payload") from exc
    if started_at.tzinfo is None:
        raise InvalidCursor("bad payload")
    return started_at, keys[1], keys[2]

"""Waiting for locks the safe way, shared by partition maintenance and the transfer's swap.

A DDL statement that waits behind a long query queues every later reader and writer behind
itself; `lock_timeout` makes it give up instead, and the caller retries with backoff.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql

from etl_platform.common.retry import retry_with_backoff

RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure)
# PostgreSQL's syntax for a time setting: a number, optionally a unit (milliseconds without one).
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

T = TypeVar("T")


def parse_duration(value: object, setting: str = "lock_timeout") -> str:
    """The duration as PostgreSQL will read it, or ValueError naming the setting.

    Checked before connecting: a bad value would otherwise fail inside every transaction (and 0
    would mean waiting forever, which is what lock_timeout is here to prevent).
    """
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not isinstance(text, str) or match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"{setting} {value!r} is not a positive PostgreSQL duration such as '2s', '500ms' or '1min' "
            "(units: us, ms, s, min, h, d)."
        )
    return text.strip()


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text)
    assert match is not None, text
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def with_lock_retries(
    conn: psycopg.Connection[Any],
    lock_timeout: str,
    work: Callable[[], T],
    *,
    on_retry: Callable[[int, float, psycopg.Error], None],
    attempts: int = 5,
    backoff_seconds: float = 0.5,
) -> T:
    """Runs `work` in a (sub)transaction under lock_timeout; a lock failure rolls back and retries.

    Nested in an open transaction this is a savepoint, so the caller's transaction survives a retry.
    The last failure propagates.
    """

    def attempt(number: int) -> T:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
            return work()

    def retried(number: int, delay: float, exc: BaseException) -> None:
        assert isinstance(exc, psycopg.Error)  # only RETRYABLE errors are retried
        on_retry(number, delay, exc)

    return retry_with_backoff(
        attempt, attempts=attempts, backoff_seconds=backoff_seconds, retry_on=RETRYABLE, on_retry=retried
    )

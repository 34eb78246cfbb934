"""Waiting for locks the safe way, shared by partition maintenance and the transfer's swap.

A DDL statement that waits behind a long query queues every later reader and writer behind
itself; `lock_timeout` makes it give up instead, and the caller retries with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from etl_platform.common.retry import retry_with_backoff
from etl_platform.common.session import pin_settings

RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure)
T = TypeVar("T")


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
            pin_settings(conn, {"lock_timeout": lock_timeout}, local=True)
            return work()

    def retried(number: int, delay: float, exc: BaseException) -> None:
        assert isinstance(exc, psycopg.Error)  # only RETRYABLE errors are retried
        on_retry(number, delay, exc)

    return retry_with_backoff(
        attempt, attempts=attempts, backoff_seconds=backoff_seconds, retry_on=RETRYABLE, on_retry=retried
    )

"""One retry-with-backoff loop (tenacity): attempt n waits backoff * 2**(n-1) seconds before the next."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

T = TypeVar("T")
Errors = type[BaseException] | tuple[type[BaseException], ...]


def retry_with_backoff(
    work: Callable[[int], T],
    *,
    attempts: int,
    backoff_seconds: float,
    retry_on: Errors,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    give_up: Callable[[int, BaseException], BaseException] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`work(attempt)` (attempt counts from 1) until it returns, at most `attempts` times.

    Only `retry_on` errors are retried; before each wait `on_retry(attempt, delay, error)` runs (count,
    log). After the last attempt `give_up(attempt, error)`, when given, makes the error raised (the
    original one is not chained: its message is in the new one); otherwise the last error propagates.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts!r}.")

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            assert error is not None
            on_retry(state.attempt_number, state.next_action.sleep, error)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_seconds, exp_base=2, min=0),
        retry=retry_if_exception_type(retry_on),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                return work(attempt.retry_state.attempt_number)
    except retry_on as exc:
        if give_up is None:
            raise
        raise give_up(attempts, exc) from None
    raise AssertionError("tenacity stopped without a result or an error")  # pragma: no cover

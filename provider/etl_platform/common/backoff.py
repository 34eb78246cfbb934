"""A failure back-off: after a dependency fails, leave it alone for a while instead of waiting on it again.

The ledger writer, the run-event publisher (both in scheduler and task processes, which must not stall)
and the dashboard's Redis cache each keep one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """`ready()` is False for `after_s` seconds (of `clock`, monotonic) after the last `failed()`."""

    def __init__(self, after_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if after_s < 0:
            raise ValueError(f"back-off after_s must not be negative, got {after_s}")
        self.after_s = float(after_s)
        self.clock = clock
        self._until = 0.0

    def ready(self) -> bool:
        """True when the dependency may be tried (no failure within the last `after_s` seconds)."""
        return self.clock() >= self._until

    def failed(self) -> None:
        """Record a failure now: `ready()` stays False for the next `after_s` seconds."""
        self._until = self.clock() + self.after_s

"""The failure back-off shared by the ledger writer, the run-event publisher and the dashboard's cache."""

from __future__ import annotations

import pytest

from etl_platform.common.backoff import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_holds_off_for_after_s_then_lets_the_dependency_be_tried_again() -> None:
    clock = FakeClock()
    backoff = Backoff(10.0, clock=clock)
    assert backoff.ready()  # never failed
    backoff.failed()
    assert not backoff.ready()
    clock.now += 9.999
    assert not backoff.ready()
    clock.now += 0.001
    assert backoff.ready()
    backoff.failed()  # a new failure starts a new wait from now
    clock.now += 5
    assert not backoff.ready()


def test_no_wait_and_a_negative_wait() -> None:
    backoff = Backoff(0.0, clock=FakeClock())
    backoff.failed()
    assert backoff.ready()
    with pytest.raises(ValueError, match="after_s"):
        Backoff(-1.0)

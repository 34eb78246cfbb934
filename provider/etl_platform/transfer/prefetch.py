"""Runs an iterator in a background thread, a bounded number of items ahead of its consumer.

The engines use it to overlap stages (read the next chunk while this one is transformed or written);
errors raised in the thread surface in the consumer, and closing the consumer stops the thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()
STOP_WAIT_S = 30.0  # how long a closing consumer waits for the thread's current item


def prefetch(items: Iterator[T], *, name: str = "etl-prefetch", depth: int = 1) -> Generator[T, None, None]:
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not cancelled.is_set():
                    with contextlib.suppress(queue.Full):
                        handoff.put(item, timeout=0.1)
                        break
                if cancelled.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:
            handoff.put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        deadline = time.monotonic() + STOP_WAIT_S
        while thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        thread.join(timeout=1)

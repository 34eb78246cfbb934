"""Partition intervals: where a partition starts and ends, and what it is called.

Temporal bounds are dates (midnight, UTC for timestamptz: maintenance sessions run with
TimeZone=UTC); integer bounds are multiples of the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from etl_platform.partitions.errors import PartitionConfigError

IntervalUnit = Literal["day", "week", "month", "year", "int"]
TEMPORAL_UNITS: tuple[IntervalUnit, ...] = ("day", "week", "month", "year")
Bound = date | int


@dataclass(frozen=True)
class Interval:
    unit: IntervalUnit  # "int": integer ranges of `step` keys
    step: int = 1  # for int ranges: the width of one partition

    @classmethod
    def parse(cls, value: str | int) -> Interval:
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                raise PartitionConfigError(f"interval {value!r}: an integer interval must be positive.")
            return cls("int", value)
        text = str(value).strip().lower()
        for unit in TEMPORAL_UNITS:
            if text == unit:
                return cls(unit)
        if text.isdigit() and int(text) > 0:
            return cls("int", int(text))
        raise PartitionConfigError(
            f"interval {value!r} is not one of {', '.join(TEMPORAL_UNITS)} or a positive integer step."
        )

    @property
    def temporal(self) -> bool:
        return self.unit != "int"

    def floor(self, value: Bound | datetime) -> Bound:
        if not self.temporal:
            assert isinstance(value, int)
            return value - value % self.step
        day = value.date() if isinstance(value, datetime) else value
        assert isinstance(day, date)
        if self.unit == "day":
            return day
        if self.unit == "week":
            return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        if self.unit == "month":
            return day.replace(day=1)
        return day.replace(month=1, day=1)

    def next(self, start: Bound) -> Bound:
        if not self.temporal:
            assert isinstance(start, int)
            return start + self.step
        assert isinstance(start, date)
        if self.unit == "day":
            return start + timedelta(days=1)
        if self.unit == "week":
            return start + timedelta(days=7)
        if self.unit == "month":
            return date(start.year + start.month // 12, start.month % 12 + 1, 1)
        return date(start.year + 1, 1, 1)

    def shift(self, start: Bound, count: int) -> Bound:
        """`count` intervals after (or before, when negative) the interval starting at `start`."""
        if not self.temporal:
            assert isinstance(start, int)
            return start + count * self.step
        assert isinstance(start, date)
        if self.unit in ("day", "week"):
            return start + timedelta(days=count * (1 if self.unit == "day" else 7))
        months = count * (12 if self.unit == "year" else 1)
        index = start.year * 12 + start.month - 1 + months
        return date(index // 12, index % 12 + 1, 1)

    def suffix(self, start: Bound) -> str:
        if not self.temporal:
            assert isinstance(start, int)
            return f"p{start}" if start >= 0 else f"pm{-start}"
        assert isinstance(start, date)
        if self.unit == "day":
            return f"p{start:%Y%m%d}"
        if self.unit == "week":
            year, week, _ = start.isocalendar()
            return f"p{year}w{week:02d}"
        if self.unit == "month":
            return f"p{start:%Y%m}"
        return f"p{start:%Y}"

    def starts(self, first: Bound, last_exclusive: Bound) -> list[Bound]:
        """Interval starts from floor(first) up to (not including) last_exclusive."""
        out: list[Bound] = []
        current = self.floor(first)
        while current < last_exclusive:  # type: ignore[operator]
            out.append(current)
            current = self.next(current)
        return out


def partition_name(parent: str, interval: Interval, start: Bound) -> str:
    """`parent_pYYYYMM` etc., the parent part shortened so the name fits PostgreSQL's 63 bytes."""
    return fit_name(parent, "_" + interval.suffix(start))


def fit_name(base: str, suffix: str, limit: int = 63) -> str:
    """`base + suffix` in at most `limit` bytes (NAMEDATALEN - 1): `base` is cut on a character
    boundary, since PostgreSQL would otherwise cut the name itself and we would look for the long one."""
    room = limit - len(suffix.encode())
    if room < 0:
        raise PartitionConfigError(f"name suffix {suffix!r} alone exceeds {limit} bytes.")
    return base.encode()[:room].decode(errors="ignore") + suffix

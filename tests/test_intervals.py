"""Partition intervals (etl_platform.partitions.intervals): floors, steps, names; pure functions."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from etl_platform.partitions.errors import PartitionConfigError
from etl_platform.partitions.intervals import Interval, fit_name, partition_name


@pytest.mark.parametrize(
    ("value", "unit", "step"),
    [
        ("month", "month", 1),
        (" Week ", "week", 1),
        ("day", "day", 1),
        ("year", "year", 1),
        (1000, "int", 1000),
        ("50", "int", 50),
    ],
)
def test_parse_accepts_units_and_positive_steps(value: str | int, unit: str, step: int) -> None:
    assert Interval.parse(value) == Interval(unit, step)


@pytest.mark.parametrize("value", ["fortnight", "", "0", "-5", 0, -1, True, "1.5"])
def test_parse_refuses_anything_else_naming_the_value(value: object) -> None:
    with pytest.raises(PartitionConfigError, match="interval"):
        Interval.parse(value)  # type: ignore[arg-type]


def test_floor_next_and_shift_per_unit() -> None:
    sunday = date(2026, 3, 15)
    assert Interval.parse("day").floor(datetime(2026, 3, 15, 23, 59)) == sunday
    assert Interval.parse("week").floor(sunday) == date(2026, 3, 9)  # ISO weeks start on Monday
    assert Interval.parse("month").floor(sunday) == date(2026, 3, 1)
    assert Interval.parse("year").floor(sunday) == date(2026, 1, 1)
    assert Interval.parse("month").next(date(2026, 12, 1)) == date(2027, 1, 1)
    assert Interval.parse("week").next(date(2026, 12, 28)) == date(2027, 1, 4)
    assert Interval.parse("month").shift(date(2026, 11, 1), 3) == date(2027, 2, 1)
    assert Interval.parse("month").shift(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert Interval.parse("year").shift(date(2026, 1, 1), -2) == date(2024, 1, 1)
    assert Interval.parse("day").shift(date(2026, 2, 27), 2) == date(2026, 3, 1)


def test_integer_intervals_floor_below_zero_and_name_negative_starts() -> None:
    iv = Interval.parse(10)
    assert not iv.temporal
    assert iv.floor(25) == 20 and iv.floor(-5) == -10
    assert iv.next(-10) == 0 and iv.shift(20, -3) == -10
    assert iv.suffix(20) == "p20" and iv.suffix(-10) == "pm10"


def test_starts_cover_the_range_from_the_floor() -> None:
    assert Interval.parse("month").starts(date(2026, 1, 20), date(2026, 4, 1)) == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    assert Interval.parse(100).starts(150, 400) == [100, 200, 300]
    assert Interval.parse("day").starts(date(2026, 1, 2), date(2026, 1, 2)) == []


def test_suffixes_per_unit() -> None:
    start = date(2026, 3, 9)
    assert [Interval.parse(u).suffix(start) for u in ("day", "week", "month", "year")] == [
        "p20260309",
        "p2026w11",
        "p202603",
        "p2026",
    ]
    assert Interval.parse("week").suffix(date(2026, 12, 28)) == "p2026w53"  # ISO year and week


def test_names_fit_63_bytes_cut_on_a_character_boundary() -> None:
    month = Interval.parse("month")
    assert partition_name("orders", month, date(2026, 3, 1)) == "orders_p202603"
    long = partition_name("x" * 70, month, date(2026, 3, 1))
    assert len(long) == 63 and long.endswith("_p202603")
    accented = partition_name("é" * 40, Interval.parse("day"), date(2026, 3, 1))  # 2 bytes a character
    assert accented == "é" * 26 + "_p20260301" and len(accented.encode()) == 62
    assert fit_name("abc", "_1", limit=4) == "ab_1"
    with pytest.raises(PartitionConfigError, match="alone exceeds 4 bytes"):
        fit_name("abc", "_12345", limit=4)

"""Checks every engine's settings share, so a bad value is named in the same words everywhere."""

from __future__ import annotations

import math

from etl_platform.common.errors import ConfigError


def require_number(
    name: str, value: object, *, minimum: float = 0, integer: bool = False, strict: bool = False
) -> None:
    """ConfigError naming `name` unless `value` is a finite number (an int if `integer`) at least
    `minimum` (above it if `strict`): one wording for every engine's settings."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)  # type: ignore[arg-type]
    if not ok or value < minimum or (strict and value == minimum):  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise ConfigError(f"{name} must be {kind} {bound}, got {value!r}")

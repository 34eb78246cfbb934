"""PostgreSQL time settings (lock_timeout and the like) checked before connecting.

A bad value would otherwise fail inside every transaction, and 0 would mean waiting forever, which
is what a lock_timeout is there to prevent. Each engine passes its own config error class, so the
error names both the setting and the engine.
"""

from __future__ import annotations

import re

from etl_platform.common.errors import ConfigError

# PostgreSQL's syntax for a time setting: a number, optionally a unit (milliseconds without one).
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(
    value: object, setting: str = "lock_timeout", *, error: type[ConfigError] = ConfigError
) -> str:
    """The duration as PostgreSQL will read it, or `error` (a ConfigError, so a ValueError) naming
    the setting."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not isinstance(text, str) or match is None or float(match.group(1)) <= 0:
        raise error(
            f"{setting} {value!r} is not a positive PostgreSQL duration such as '2s', '500ms' or '1min' "
            "(units: us, ms, s, min, h, d)."
        )
    return text.strip()


def duration_seconds(text: str) -> float:
    """Seconds in a duration `parse_duration` accepted."""
    match = _DURATION.match(text)
    assert match is not None, text
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]

"""Durations as people write them in definitions: `500ms`, `30s`, `15m`, `48h`, `2d`.

A small strict parser rather than a library: pytimeparse2 also reads `1:30`, `5 minutes`,
`-5s` and `1mo` (a guessed 30 days), so a typo would become a silently wrong deadline.
A bare number is seconds; that is also how the canonical (pinned) form stores durations.
"""

from __future__ import annotations

import re

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
HINT = "write a number and one unit: 500ms, 30s, 15m, 48h, 2d"
MAX_SECONDS = 36500 * 86400.0  # 100 years: longer is a typo, and a deadline past year 9999 cannot be written


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Seconds for `value` (a duration string or a number of seconds); ValueError if invalid."""
    if isinstance(value, bool):  # bool is an int in Python; `timeout: yes` is a mistake
        raise ValueError(f"bad duration {value!r}; {HINT}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value.strip())
        if not match:
            raise ValueError(f"bad duration {value!r}; {HINT}")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    else:
        raise ValueError(f"bad duration {value!r}; {HINT}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"bad duration {value!r}: must be {'zero or more' if allow_zero else 'positive'} and finite")
    if seconds > MAX_SECONDS:
        raise ValueError(f"bad duration {value!r}: must be at most 36500d (100 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact way to write `seconds` back (`172800` -> `2d`), for diagrams."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{round(seconds * 1000)}ms"

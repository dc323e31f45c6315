"""The `COUNT/PERIOD` and duration grammar shared by the CLI, the scheduler and the fake API.

>>> parse_limit("15000/hour")
Limit(count=15000, period=3600.0)
>>> parse_limit("1000/3s")
Limit(count=1000, period=3.0)
>>> parse_duration("30d")
2592000.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError

_UNIT_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([a-z]+)?\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


@dataclass(frozen=True)
class Limit:
    """At most `count` units in any rolling window of `period` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.period)}"


def parse_duration(text: str, *, allow_zero: bool = True) -> float:
    """Seconds in `text`: `90`, `3s`, `10m`, `1.5h`, `30d`, `hour` (= 1h), or parts that add
    up, as a person writes them: `1h30m`, `2d12h`.

    >>> parse_duration("1h30m"), parse_duration("90m"), parse_duration("45")
    (5400.0, 5400.0, 45.0)
    """
    parts = _DURATION_PART.findall(text.lower())
    if len(parts) > 1 and "".join(n + u for n, u in parts) == text.lower().replace(" ", ""):
        return sum(parse_duration(n + u, allow_zero=allow_zero) for n, u in parts)
    match = _DURATION.match(text.lower())
    if not match or not (match.group(1) or match.group(2)):
        raise InputError(
            f"bad duration {text!r}: use a number with a unit, e.g. 30s, 10m, 1h, 1h30m, 30d"
        )
    number = float(match.group(1)) if match.group(1) else 1.0
    unit = match.group(2) or "s"
    if unit not in _UNIT_SECONDS:
        raise InputError(f"bad duration {text!r}: unknown unit {unit!r} (use s, m, h or d)")
    seconds = number * _UNIT_SECONDS[unit]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise InputError(f"bad duration {text!r}: must be more than zero")
    return seconds


def parse_limit(text: str) -> Limit:
    """Parse `COUNT/PERIOD`, e.g. `15000/hour`, `500/minute`, `1000/3s`."""
    count_text, slash, period_text = text.partition("/")
    if not slash or not count_text.strip().isdigit():
        raise InputError(
            f"bad limit {text!r}: use COUNT/PERIOD, e.g. 15000/hour, 500/minute or 1000/3s"
        )
    count = int(count_text)
    if count < 1:
        raise InputError(f"bad limit {text!r}: the count must be at least 1")
    try:
        period = parse_duration(period_text, allow_zero=False)
    except InputError:
        raise InputError(
            f"bad limit {text!r}: the period must be second, minute, hour, day or like 3s, 10m"
        ) from None
    return Limit(count, period)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 3600 -> `1h`, 3 -> `3s`, 2.5 -> `2.5s`."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"

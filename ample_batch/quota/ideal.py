"""The ideal schedule: when the last batch of a quota-bound job can go out at the earliest.

Pure arithmetic over the limit, no ledger: `estimate` quotes it before a run (round the
clock, and squeezed into the night-only cron recipe's nights), and the tests hold the
scheduler to it.

    >>> ideal_last_submission(12_000, Limit(1000, 2.0), 1000)   # 11 windows
    22.0
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import NamedTuple

from ..limits import Limit


def ideal_last_submission(unique_emails: int, usage: Limit, chunk: int) -> float:
    """Seconds from the first submission to the last on an ideal quota-bound schedule.

    Batches are `chunk` emails (the last one the remainder). A rolling window holds at most
    `usage.count // chunk` full batches, so the greedy schedule, which no schedule beats, sends
    them in groups one window apart; the remainder joins the last group if it still fits.

    >>> ideal_last_submission(12_000, Limit(1000, 2.0), 1000)   # 11 windows
    22.0
    >>> ideal_last_submission(1_000, Limit(1000, 2.0), 300)     # 300+300+300+100 in one window
    0.0
    """
    if not 1 <= chunk <= usage.count:
        raise ValueError(f"chunk must be between 1 and {usage.count}, not {chunk}")
    if unique_emails <= chunk:
        return 0.0
    batches = math.ceil(unique_emails / chunk)
    last = unique_emails - (batches - 1) * chunk
    per_window = usage.count // chunk
    group = (batches - 2) // per_window  # the group of the last full batch
    in_group = (batches - 1) - group * per_window
    if in_group * chunk + last > usage.count:
        group += 1
    return group * usage.period


NIGHT_START_HOUR = 22
"""When the README's night-only cron recipe starts each run (local time)."""
NIGHT_HOURS = 8.0
"""How long each of its runs may submit: `--max-runtime 8h`."""


class NightOnly(NamedTuple):
    """When a job run only at night (the night-only cron recipe) sends its last batch."""

    last_submission: float
    """Epoch seconds of the last submission."""
    nights: int
    """How many nightly runs submit something, the first one included."""


def night_only_last_submission(
    start: float,
    last_submission: float,
    period: float,
    *,
    night_start_hour: int = NIGHT_START_HOUR,
    night_hours: float = NIGHT_HOURS,
) -> NightOnly:
    """The round-the-clock schedule (`last_submission` seconds from the first group to the
    last, groups one usage `period` apart) squeezed into nightly runs.

    Each night's run starts at `night_start_hour` local time, the first one at or after
    `start` (when cron first runs it), and admits a group only before its `night_hours` are
    up, as `--max-runtime` does. Local dates are stepped one by one, so a daylight-saving
    change moves the night with the wall clock, as cron does.

    >>> from datetime import datetime
    >>> noon = datetime(2026, 12, 4, 12).timestamp()
    >>> night = night_only_last_submission(noon, 66 * 3600.0, 3600.0)   # 67 groups, 8 a night
    >>> night.nights, datetime.fromtimestamp(night.last_submission).isoformat()
    (9, '2026-12-13T00:00:00')
    """
    if not period > 0 or not night_hours > 0:
        raise ValueError("the period and the night must be positive")
    groups = math.floor(last_submission / period + 1e-9) + 1
    window = night_hours * 3600.0
    day = datetime.fromtimestamp(start).date()
    if _night_start(day, night_start_hour) < start:
        day += timedelta(days=1)
    earliest, nights = start, 0
    while True:
        night = _night_start(day, night_start_hour)
        first = max(earliest, night)
        day += timedelta(days=1)
        if first >= night + window:
            continue  # the quota stays closed all this night (a period longer than a day)
        nights += 1
        fits = math.ceil((night + window - first) / period)
        if groups <= fits:
            return NightOnly(first + (groups - 1) * period, nights)
        groups -= fits
        earliest = first + fits * period


def _night_start(day: date, hour: int) -> float:
    # A naive local datetime's timestamp() goes through mktime, which knows the local DST.
    return datetime.combine(day, dt_time(hour)).timestamp()

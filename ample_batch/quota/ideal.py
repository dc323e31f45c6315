"""The ideal schedule: when the last batch of a quota-bound job can go out at the earliest.

Pure arithmetic over the limit, no ledger: `estimate` quotes it before a run, and the tests
hold the scheduler to it.

    >>> ideal_last_submission(12_000, Limit(1000, 2.0), 1000)   # 11 windows
    22.0
"""

from __future__ import annotations

import math

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

"""Plan a job: which emails still need the API, in batches that fit the limits, and when
the last one could go out.

Pure functions over plain values: no I/O, so the planner is property-tested.

    >>> list(split_batches(["a@x.co", "b@x.co", "c@x.co"], 2))
    [['a@x.co', 'b@x.co'], ['c@x.co']]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import InputError
from ..limits import Limit
from ..quota.ideal import ideal_last_submission

MAX_BATCH = 100_000
"""The API's per-request maximum."""


def chunk_size_for(requested: int | None, usage: Limit) -> int:
    """Emails per POST: the request, capped by the API maximum and the usage-limit count."""
    if requested is not None:
        if requested < 1:
            raise InputError("--chunk-size must be at least 1")
        if requested > MAX_BATCH:
            raise InputError(
                f"--chunk-size {requested:,} is above the API's maximum of {MAX_BATCH:,} "
                "emails per request"
            )
    return min(requested or MAX_BATCH, MAX_BATCH, usage.count)


T = TypeVar("T")


def split_batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """Consecutive slices of at most `size` items; every item lands in exactly one.

    The one way batches are cut (planning, re-cutting a batch, planning's transactions);
    lazy, so a job of millions is never held twice.
    """
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Plan:
    """What a run must still do for a job."""

    cached: list[tuple[str, str, bool | None]]
    """Fresh verdicts from the cache: no credit needed."""
    new: list[str]
    """Emails to submit, sorted, not yet in any batch of the job."""


def plan_emails(
    unique: Iterable[str],
    already_batched: Iterable[str],
    fresh: Iterable[tuple[str, str, bool | None]],
) -> Plan:
    """Split the job's unique emails into cache hits and emails to submit.

    Emails already in one of the job's batches (submitted, done or failed) are left alone:
    that is what makes a resumed run never pay twice.
    """
    todo = set(unique).difference(already_batched)
    cached = [row for row in fresh if row[0] in todo]
    todo.difference_update(row[0] for row in cached)
    return Plan(cached=cached, new=sorted(todo))


@dataclass(frozen=True)
class Schedule:
    """The earliest the remaining work can go out under the limits."""

    batches: int
    requests: int
    last_submission: float
    """Seconds from now until the last POST, if the usage window is empty now."""


def schedule_for(
    emails: int, *, chunk: int, usage: Limit, rate: Limit, polls_per_batch: int = 10
) -> Schedule:
    """An optimistic estimate: quota-bound submissions, then one page per 100 results."""
    batches = math.ceil(emails / chunk) if emails else 0
    requests = batches * (1 + polls_per_batch) + math.ceil(emails / 100)
    if batches == 0:
        return Schedule(0, 0, 0.0)
    quota_bound = ideal_last_submission(emails, usage, chunk)
    rate_bound = (requests / rate.count) * rate.period
    return Schedule(batches, requests, max(quota_bound, rate_bound - rate.period))

"""The ideal schedule is exact: the closed form matches a greedy fill of window after window,
and the night-only schedule matches placing its groups one by one."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ample_batch.limits import Limit
from ample_batch.quota.ideal import ideal_last_submission, night_only_last_submission


def greedy(unique: int, usage: Limit, chunk: int) -> float:
    """Fill each window with batches in order until the next one does not fit."""
    sizes = [chunk] * (unique // chunk) + ([unique % chunk] if unique % chunk else [])
    window = used = 0
    for size in sizes:
        if used + size > usage.count:
            window, used = window + 1, 0
        used += size
    return window * usage.period


@pytest.mark.parametrize(
    ("unique", "usage", "chunk", "expected"),
    [
        (12_000, Limit(1000, 2.0), 1000, 22.0),
        (12_001, Limit(1000, 2.0), 1000, 24.0),
        (1_000, Limit(1000, 2.0), 1000, 0.0),
        (0, Limit(1000, 2.0), 1000, 0.0),
        (1_000_000, Limit(15000, 3600.0), 15000, 66 * 3600.0),
        (1_000, Limit(1000, 2.0), 300, 0.0),
        (1_100, Limit(1000, 2.0), 300, 2.0),
        (10_000, Limit(1000, 2.0), 300, 20.0),
        (10, Limit(3, 1.0), 2, 4.0),
    ],
)
def test_ideal_last_submission(unique: int, usage: Limit, chunk: int, expected: float) -> None:
    assert ideal_last_submission(unique, usage, chunk) == expected


@given(
    unique=st.integers(0, 5000),
    count=st.integers(1, 400),
    chunk_share=st.floats(0.0, 1.0),
)
def test_the_closed_form_is_the_greedy_fill(unique: int, count: int, chunk_share: float) -> None:
    usage = Limit(count, 3.0)
    chunk = max(1, round(chunk_share * count))
    assert ideal_last_submission(unique, usage, chunk) == greedy(unique, usage, chunk)


def test_ideal_last_submission_refuses_impossible_chunks() -> None:
    with pytest.raises(ValueError):
        ideal_last_submission(10, Limit(5, 1.0), 6)
    with pytest.raises(ValueError):
        ideal_last_submission(10, Limit(5, 1.0), 0)


def one_group_at_a_time(
    start: float, groups: int, period: float, hours: float
) -> tuple[float, int]:
    """The night-only schedule group by group: each goes at the earliest instant the quota
    allows that lies inside a night (22:00 local, for `hours`) starting at or after `start`."""
    first_night = datetime.fromtimestamp(start).replace(hour=22, minute=0, second=0, microsecond=0)
    if first_night.timestamp() < start:
        first_night += timedelta(days=1)
    nights = [(first_night + timedelta(days=n)).timestamp() for n in range(2000)]
    at, used, index = start, set(), 0
    for _ in range(groups):
        while not nights[index] <= at < nights[index] + hours * 3600:
            if at >= nights[index] + hours * 3600:
                index += 1
            else:
                at = nights[index]
        used.add(index)
        last, at = at, at + period
    return last, len(used)


@given(
    hour=st.floats(0, 24, exclude_max=True),
    groups=st.integers(1, 60),
    period=st.sampled_from([600.0, 3600.0, 5400.0, 8 * 3600.0, 86400.0, 2 * 86400.0]),
    hours=st.sampled_from([1.0, 8.0, 12.5]),
)
def test_night_only_is_the_group_by_group_schedule(
    hour: float, groups: int, period: float, hours: float
) -> None:
    start = datetime(2026, 12, 4).timestamp() + hour * 3600
    night = night_only_last_submission(start, (groups - 1) * period, period, night_hours=hours)
    assert (night.last_submission, night.nights) == one_group_at_a_time(
        start, groups, period, hours
    )


def test_night_only_leaves_two_thirds_of_the_day_unused() -> None:
    # 1M unique emails at 15,000/hour: 67 hourly groups, 67 hours round the clock; at 8 a
    # night, 9 nights: the last on the ninth night, two hours in.
    noon = datetime(2026, 12, 4, 12).timestamp()
    night = night_only_last_submission(
        noon, ideal_last_submission(1_000_000, Limit(15000, 3600.0), 15000), 3600.0
    )
    assert night.nights == 9
    assert datetime.fromtimestamp(night.last_submission) == datetime(2026, 12, 13, 0, 0)
    # Nothing left to send: the first night's start, whatever the hour now.
    evening = datetime(2026, 12, 4, 23).timestamp()
    assert night_only_last_submission(evening, 0.0, 3600.0) == (
        datetime(2026, 12, 5, 22).timestamp(),
        1,
    )

"""The ideal schedule is exact: the closed form matches a greedy fill of window after window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ample_batch.limits import Limit
from ample_batch.quota.ideal import ideal_last_submission


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

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ample_batch.errors import InputError
from ample_batch.jobs.plan import chunk_size_for, plan_emails, schedule_for, split_batches
from ample_batch.limits import Limit

emails = st.lists(st.from_regex(r"[a-z]{1,6}@[a-z]{1,5}\.(com|org)", fullmatch=True), max_size=60)


@given(emails, st.integers(min_value=1, max_value=25))
def test_every_email_lands_in_exactly_one_batch(items: list[str], size: int) -> None:
    batches = list(split_batches(items, size))
    assert [e for batch in batches for e in batch] == items
    assert all(1 <= len(batch) <= size for batch in batches)


@given(emails, emails, emails)
def test_plan_never_resubmits(unique: list[str], batched: list[str], cached: list[str]) -> None:
    fresh = [(e, "deliverable", False) for e in cached]
    plan = plan_emails(unique, batched, fresh)
    new = set(plan.new)
    hits = {row[0] for row in plan.cached}
    assert not new & set(batched)
    assert not new & hits
    assert new | hits | (set(unique) & set(batched)) == set(unique)
    assert plan.new == sorted(new)


def test_chunk_size_respects_every_cap() -> None:
    assert chunk_size_for(None, Limit(15000, 3600)) == 15000
    assert chunk_size_for(None, Limit(500000, 3600)) == 100_000
    assert chunk_size_for(2000, Limit(1000, 3)) == 1000
    assert chunk_size_for(500, Limit(1000, 3)) == 500
    with pytest.raises(InputError, match="maximum of 100,000"):
        chunk_size_for(100_001, Limit(15000, 3600))
    with pytest.raises(InputError, match="at least 1"):
        chunk_size_for(0, Limit(15000, 3600))


def test_schedule_for_a_million_emails() -> None:
    timing = schedule_for(1_000_000, chunk=15000, usage=Limit(15000, 3600), rate=Limit(500, 60))
    assert timing.batches == 67
    assert timing.last_submission == 66 * 3600
    assert schedule_for(0, chunk=10, usage=Limit(10, 1), rate=Limit(10, 1)).batches == 0

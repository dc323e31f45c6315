"""What a re-check policy finds stale (jobs/stale.py) and the one store write it needs
(`release_stale`), on a real store of each backend whose clock the test moves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import ManualClock
from store_backends import Backend

from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import BatchState, Job
from ample_batch.jobs.sqlite.store import Store
from ample_batch.jobs.stale import KEEP_THE_CACHE, StaleVerdicts
from ample_batch.pipeline.steps import prune_cache
from ample_batch.recheck import RecheckPolicy

DAY = 86400.0
WEEK = RecheckPolicy((("unknown", 7 * DAY),))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000_000_000.0)


@pytest.fixture
def store(backend: Backend, clock: ManualClock) -> JobStore:
    return backend.open(clock=clock)


def _job(store: JobStore, name: str = "/data/leads.csv") -> Job:
    # Named by content as well: a PostgreSQL store finds jobs by fingerprint, not path.
    return store.open_job(
        input_path=name, fingerprint=name, email_column="Email", output_path=None,
        cache_ttl=30 * DAY,
    )  # fmt: skip


def _bought(store: JobStore, job: Job, verdicts: list[tuple[str, str, bool | None]]) -> int:
    """A batch of the job whose `verdicts` came in now (the store's clock), done. Recorded
    straight from planned: a submission's check would take the verdicts already cached."""
    store.plan(job.id, cached=[], new=[e for e, _, _ in verdicts], chunk_size=100)
    batch_id = store.batches(job.id, BatchState.PLANNED)[-1].id
    store.record_page(batch_id, verdicts, next_href=None)
    store.finish(batch_id)
    return batch_id


def test_release_stale_empties_settled_batches_only_and_old_cache_rows_only(
    store: JobStore, clock: ManualClock
) -> None:
    job = _job(store)
    done = _bought(store, job, [("a@x.co", "unknown", False), ("b@x.co", "deliverable", True)])
    store.plan(job.id, cached=[("c@x.co", "unknown", None)], new=["p@x.co"], chunk_size=100)
    cache_batch = store.batches(job.id, BatchState.DONE)[-1].id
    clock.advance(10 * DAY)
    # Another job bought c@x.co again just now: that verdict is kept.
    _bought(store, _job(store, "/other.csv"), [("c@x.co", "unknown", True)])
    released = store.release_stale(
        job.id, ["a@x.co", "c@x.co", "p@x.co", "zz@x.co"], checked_before=clock.now - 7 * DAY
    )
    assert released == 2  # a (bought) and c (from the cache); the planned p stays
    assert sorted(store.batched_emails(job.id)) == ["b@x.co"]
    assert store.batch(done).size == 1 and store.batch(cache_batch).size == 0
    assert store.batch(done).state is BatchState.DONE
    cached = {e: (r, c) for e, r, c in store.fresh_verdicts(float("-inf"))}
    assert cached == {"b@x.co": ("deliverable", True), "c@x.co": ("unknown", True)}
    # KEEP_THE_CACHE leaves every cached verdict in place.
    assert store.release_stale(job.id, ["b@x.co"], checked_before=KEEP_THE_CACHE) == 1
    assert "b@x.co" in {e for e, _, _ in store.fresh_verdicts(float("-inf"))}


def test_a_released_email_is_bought_not_given_its_old_verdict_back(
    store: JobStore, clock: ManualClock
) -> None:
    job = _job(store)
    _bought(store, job, [("a@x.co", "unknown", False)])
    clock.advance(10 * DAY)
    store.release_stale(job.id, ["a@x.co"], checked_before=clock.now - 7 * DAY)
    store.plan(job.id, cached=[], new=["a@x.co"], chunk_size=100)
    (planned,) = store.batches(job.id, BatchState.PLANNED)
    # The submission's cache check finds no verdict to take: the batch goes out.
    claim = store.mark_submitting(planned.id)
    assert not claim.changed and store.batch(planned.id).state is BatchState.SUBMITTING


def test_the_jobs_own_verdicts_are_stale_by_their_cached_check_time(
    store: JobStore, backend: Backend, clock: ManualClock
) -> None:
    job = _job(store)
    _bought(store, job, [("old@x.co", "unknown", False), ("ok@x.co", "deliverable", False)])
    _bought(store, job, [("gone@x.co", "unknown", False), ("other@x.co", "unknown", True)])
    clock.advance(8 * DAY)
    _bought(store, job, [("new@x.co", "unknown", False)])
    # Another job has since checked other@x.co again (same verdict); gone@x.co was pruned.
    _bought(store, _job(store, "/b.csv"), [("other@x.co", "unknown", True)])
    backend.execute("DELETE FROM verdicts WHERE email = 'gone@x.co'")
    wanted = {"old@x.co", "ok@x.co", "gone@x.co", "other@x.co", "new@x.co"}
    stale = StaleVerdicts.read(store, WEEK, now=clock.now, wanted=wanted)
    assert sorted(stale.own(store.job_verdicts(job.id))) == ["gone@x.co", "old@x.co"]
    assert stale.rechecked(["old@x.co", "ok@x.co"]) == {"unknown": 1}


def test_stale_cache_hits_are_not_reused_and_only_bought_ones_are_deleted(
    store: JobStore, clock: ManualClock
) -> None:
    seed = _job(store, "/seed.csv")
    _bought(store, seed, [("u@x.co", "unknown", False), ("d@x.co", "deliverable", False)])
    _bought(store, seed, [("held@x.co", "unknown", False)])
    clock.advance(8 * DAY)
    _bought(store, seed, [("fresh@x.co", "unknown", False)])
    wanted = {"u@x.co", "d@x.co", "fresh@x.co", "held@x.co", "mine@x.co"}
    stale = StaleVerdicts.read(store, WEEK, now=clock.now, wanted=wanted)
    current = list(stale.current(store.fresh_verdicts(clock.now - 30 * DAY)))
    assert sorted(e for e, _, _ in current) == ["d@x.co", "fresh@x.co"]
    assert stale.from_cache == {"u@x.co", "held@x.co"}
    # Only what the plan buys is deleted from the cache: held@x.co stays in its job's batch.
    assert stale.to_delete(["u@x.co", "mine@x.co"]) == {clock.now - 7 * DAY: ["u@x.co"]}
    assert stale.rechecked(["u@x.co", "mine@x.co"]) == {"unknown": 1}


def test_pruning_keeps_what_the_longest_rule_still_judges(tmp_path: Path) -> None:
    clock = ManualClock(start=time.time() - 40 * DAY)
    with Store(tmp_path, clock=clock) as store:
        job = _job(store)
        _bought(store, job, [("risky@x.co", "risky", False)])
        store.update_job(job.id, state="done", stats={})  # no unfinished job's cutoff holds it
    sixty_days = RecheckPolicy((("risky", 60 * DAY),))
    prune_cache(tmp_path, 0.0, sixty_days)
    with Store(tmp_path) as store:
        assert [e for e, _, _ in store.fresh_verdicts(float("-inf"))] == ["risky@x.co"]
    prune_cache(tmp_path, 0.0)  # no rule past the 30 days always kept: the 40-day one goes
    with Store(tmp_path) as store:
        assert list(store.fresh_verdicts(float("-inf"))) == []

"""What both job stores do alike (jobs/store_shared.py), on both backends: a transition reads
the batch it changes inside its own transaction, so another process's write just before it
is seen, never overwritten with what was read earlier; and the cache's pruning threshold."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from store_backends import Backend

from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import BatchState, Job
from ample_batch.jobs.store_shared import prune_threshold
from ample_batch.options import DEFAULT_CACHE_TTL

DAY = 86400.0


class Interleaving:
    """A store's clock that, the first time it is read once armed, lets another process
    write first. A transition reads its clock (the time it stamps) before its transaction
    opens, so that write lands after anything the store read outside its transaction and
    before the transaction itself."""

    def __init__(self, backend: Backend, start: float = 1_000_000.0) -> None:
        self.backend = backend
        self.now = start
        self.fired = False
        self._then: Callable[[JobStore], None] | None = None

    def arm(self, write: Callable[[JobStore], None]) -> None:
        """Run `write` on a store of its own, as another process would, at the next read."""
        self._then = write

    def __call__(self) -> float:
        write, self._then = self._then, None
        if write is not None:
            self._other_process(write)
            self.fired = True
        return self.now

    def _other_process(self, write: Callable[[JobStore], None]) -> None:
        # In a thread, bounded: a store that read its clock inside its transaction would
        # keep the other write waiting for the lock it holds, and the test would hang.
        failed: list[BaseException] = []

        def run() -> None:
            # Opened, used and closed in its thread: a sqlite3 connection stays in one.
            other = self.backend.open()
            self.backend.opened.remove(other)
            try:
                with other:
                    write(other)
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=10.0)
        assert not thread.is_alive(), "the clock was read inside the transaction"
        if failed:
            raise failed[0]


def _job(store: JobStore) -> Job:
    return store.open_job(
        input_path="/data/leads.csv", fingerprint="f", email_column="Email",
        output_path=None, cache_ttl=0,
    )  # fmt: skip


def _assert_sizes_hold(store: JobStore, job_id: str) -> None:
    """Every batch's size is the number of emails it holds, and no email is in two."""
    held: list[str] = []
    for batch in store.batches(job_id):
        emails = store.batch_emails(batch.id)
        assert batch.size == len(emails), batch
        held += emails
    assert len(held) == len(set(held))


@pytest.fixture
def stores(backend: Backend) -> tuple[JobStore, Interleaving]:
    """A store on a clock that lets another process write on the same state at the moment
    a transition is about to open its transaction."""
    clock = Interleaving(backend)
    return backend.open(clock=clock), clock


def test_a_split_sees_a_split_made_just_before_it(
    stores: tuple[JobStore, Interleaving],
) -> None:
    mine, clock = stores
    job = _job(mine)
    mine.plan(job.id, cached=[], new=[f"u{i}@x.co" for i in range(10)], chunk_size=10)
    (batch,) = mine.batches(job.id)
    clock.arm(lambda other: other.split(batch.id, 4))
    mine.split(batch.id, 4)
    assert clock.fired
    _assert_sizes_hold(mine, job.id)
    assert sorted(b.size for b in mine.batches(job.id)) == [2, 4, 4]


def test_a_retry_sees_a_page_recorded_just_before_it(
    stores: tuple[JobStore, Interleaving],
) -> None:
    mine, clock = stores
    job = _job(mine)
    emails = [f"u{i}@x.co" for i in range(10)]
    mine.plan(job.id, cached=[], new=emails, chunk_size=10)
    (batch,) = mine.batches(job.id)
    mine.mark_submitting(batch.id)
    mine.mark_running(batch.id, remote_id="r1", remote_href="/v/r1")
    mine.mark_fetching(batch.id, first_href="/v/r1", remote_status="error")
    # Another process records a page of the batch while this one gives up on it.
    page = [(email, "deliverable", False) for email in emails[:3]]
    clock.arm(lambda other: other.record_page(batch.id, page, next_href=None))
    retry = mine.retry_unresolved(batch.id, error="boom")
    assert clock.fired
    assert retry is not None
    _assert_sizes_hold(mine, job.id)
    assert mine.batch_emails(retry) == sorted(emails[3:])
    assert mine.batch(batch.id).state is BatchState.DONE


def _cutoffs(*jobs: tuple[float, float, str]) -> list[Job]:
    return [
        Job(id=str(n), input_path="/in", fingerprint="f", email_column="Email",
            output_path=None, created_at=created_at, updated_at=created_at,
            cache_cutoff=cutoff, state=state, stats={}, possible_double_charges=0)
        for n, (created_at, cutoff, state) in enumerate(jobs)
    ]  # fmt: skip


def test_the_prune_threshold_keeps_the_longest_ttl_in_use_and_every_unfinished_cutoff() -> None:
    now = 100 * DAY
    # Neither this run's TTL nor the default: the longest one wins.
    assert prune_threshold(now, DAY, []) == now - DEFAULT_CACHE_TTL
    assert prune_threshold(now, 60 * DAY, []) == now - 60 * DAY
    # A stored job's TTL counts, finished or not; a job that reuses nothing (cutoff inf) not.
    assert prune_threshold(now, 0, _cutoffs((90 * DAY, 50 * DAY, "done"))) == now - 40 * DAY
    assert prune_threshold(now, 0, _cutoffs((90 * DAY, float("inf"), "new"))) == (
        now - DEFAULT_CACHE_TTL
    )
    # An unfinished job keeps everything its cutoff lets it reuse, however old.
    old = _cutoffs((95 * DAY, 5 * DAY, "running"))
    assert prune_threshold(now, 0, old) == 5 * DAY

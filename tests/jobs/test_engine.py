"""The engine against the fake API's fault switches, in process: one bad batch never blocks a
job, a POST of unknown fate opens no new exposure, refusals cost no quota and no verdict.

The tests taking `backend` run on both job stores (SQLite, PostgreSQL): those that exercise
the store's transitions (refusals, splits, releases, retries, pages); the others on SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from helpers import FAST_RETRY, ManualClock, make_client
from store_backends import Backend

from ample_batch.api.match import ResultMatcher
from ample_batch.api.retries import RetryPolicy
from ample_batch.fake.config import verdict_for
from ample_batch.fake.server import RunningFake
from ample_batch.jobs.engine import Engine
from ample_batch.jobs.follow import Counters, FollowPolicy
from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import BatchState
from ample_batch.jobs.sqlite.store import Store
from ample_batch.limits import Limit
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler

StartFake = Callable[..., Awaitable[RunningFake]]
FAST_FOLLOW = FollowPolicy(failures=3, span=0.3, backoff_initial=0.02, backoff_max=0.1)


def emails(count: int, start: int = 0) -> list[str]:
    return [f"lead{i:05d}@company{i % 7}.com" for i in range(start, start + count)]


class Job:
    """One job in a state dir, and an engine run over it against `url`."""

    def __init__(
        self,
        tmp_path: Path,
        session: aiohttp.ClientSession,
        url: str,
        addresses: list[str],
        *,
        chunk: int = 1000,
        usage: Limit = Limit(1000, 1.0),
        wall_clock: Callable[[], float] = time.time,
        backend: Backend | None = None,
    ) -> None:
        self.state = tmp_path / "state"
        self.store: JobStore = Store(self.state) if backend is None else backend.open()
        job = self.store.open_job(
            input_path=str(tmp_path / "leads.csv"),
            fingerprint="f",
            email_column="Email",
            output_path=None,
            cache_ttl=0,
        )
        self.job_id = job.id
        self.store.plan(job.id, cached=[], new=sorted(addresses), chunk_size=chunk)
        self.session, self.url, self.chunk, self.usage = session, url, chunk, usage
        self.wall_clock = wall_clock
        self.scheduler = Scheduler(
            ScheduleConfig(
                usage_limit=usage, rate_limit=Limit(1000, 1.0), ledger_dir=self.state, key_id="t"
            )
        )

    async def run(
        self,
        *,
        policy: FollowPolicy = FAST_FOLLOW,
        deadline: float | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = FAST_RETRY,
    ) -> Counters:
        stop = asyncio.Event()
        engine = Engine(
            self.store,
            self.job_id,
            make_client(self.session, self.url, throttle=self.scheduler, stop=stop, policy=retry),
            self.scheduler,
            stop=stop,
            deadline=deadline,
            chunk_size=self.chunk,
            wall_clock=self.wall_clock,
            follow_policy=policy,
        )
        return await asyncio.wait_for(engine.run(), timeout)

    def states(self) -> list[BatchState]:
        return [b.state for b in self.store.batches(self.job_id)]

    def verdicts(self) -> dict[str, str]:
        return {e: r for e, r, _ in self.store.job_verdicts(self.job_id)}

    def close(self) -> None:
        self.scheduler.close()
        self.store.close()


def posts(fake: RunningFake) -> list[int]:
    return [r.status for r in fake.api.log if r.method == "POST"]


# -- one bad batch never blocks a job (issue 11, section 4) ----------------------------------


async def test_404_polls_right_after_the_202_are_waited_out_not_bought_again(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    fake = await fake_api(retry_after=0.05, not_found_polls=2)
    job = Job(tmp_path, session, fake.url, emails(50), backend=backend)
    counters = await job.run()
    assert posts(fake) == [202]  # the old engine bought the batch again at the first 404
    assert counters.possible_double_charges == 0
    assert job.states() == [BatchState.DONE]
    assert fake.api.summary().emails_charged_twice == 0
    job.close()


async def test_a_batch_unknown_for_long_is_bought_again_and_counted(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake = await fake_api(retry_after=0.05, not_found_polls=1000)
    job = Job(tmp_path, session, fake.url, emails(40))
    counters = await job.run(policy=replace(FAST_FOLLOW, failures=2, span=0.0))
    # Given up after two 404s each time: bought again twice, each resend counted; the third
    # attempt is the last (BATCH_ATTEMPTS), so its emails are written `failed`, not resent.
    assert posts(fake) == [202, 202, 202]
    assert counters.possible_double_charges == 80
    assert job.store.get_job(job.job_id).possible_double_charges == 80  # type: ignore[union-attr]
    assert set(job.verdicts().values()) == {"failed"}
    assert len(job.verdicts()) == 40
    job.close()


# -- a --simulate run's fake dies with its run: its batches are sent again at once ----------

SIMULATED_FOLLOW = FollowPolicy(resend_unknown=True)
"""--simulate's policy: the 10-minute bounds of a real run, and forgotten batches resent."""


async def _stopped_with_a_batch_in_flight(fake_api: StartFake, job: Job) -> None:
    """A run against a fake of its own that stops (its deadline) while the batch is queued
    there; the fake is then forgotten, as a --simulate run's dies with its process."""
    gone = await fake_api(retry_after=0.05, queue_seconds=60)
    job.url = gone.url
    await job.run(policy=SIMULATED_FOLLOW, deadline=time.monotonic() + 0.3)
    assert job.states()[-1] is BatchState.RUNNING


async def test_an_earlier_runs_batch_the_simulated_api_does_not_know_is_sent_again_at_once(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    job = Job(tmp_path, session, "", emails(40), backend=backend)
    # Stopped again and again with a batch in flight: each rerun resends the last one as
    # the same attempt, so no number of stops writes an email `failed`.
    for _ in range(4):
        await _stopped_with_a_batch_in_flight(fake_api, job)
    fresh = await fake_api(retry_after=0.05)
    job.url = fresh.url
    # The real span (600 s) is not waited out: this deadline would end the run long before.
    counters = await job.run(policy=SIMULATED_FOLLOW, deadline=time.monotonic() + 10)
    assert posts(fresh) == [202]
    assert job.states() == [BatchState.DONE] * 5
    assert {batch.attempt for batch in job.store.batches(job.job_id)} == {1}
    assert set(job.verdicts().values()) - {"failed"} == set(job.verdicts().values())
    assert len(job.verdicts()) == 40
    # Nothing was paid by a simulation, and a real API would not have forgotten the batch.
    assert counters.possible_double_charges == 0
    assert job.store.get_job(job.job_id).possible_double_charges == 0  # type: ignore[union-attr]
    assert any("sent again" in note for note in counters.notes)
    job.close()


async def test_a_real_run_never_resends_an_unknown_batch_before_the_404_rule_allows(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    job = Job(tmp_path, session, "", emails(40))
    await _stopped_with_a_batch_in_flight(fake_api, job)
    other = await fake_api(retry_after=0.05)
    job.url = other.url
    counters = await job.run(policy=FollowPolicy(), deadline=time.monotonic() + 0.5)
    assert posts(other) == []
    assert job.states() == [BatchState.RUNNING]
    (batch,) = job.store.batches(job.job_id)
    assert job.store.follow_failures(batch.id) == 1
    assert counters.possible_double_charges == 0
    job.close()


async def test_a_batch_this_run_sent_keeps_the_404_rule_when_simulated(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Its own API knows it: a 404 is the API's lag, waited out, not a loop of resends.
    fake = await fake_api(retry_after=0.05, not_found_polls=2)
    job = Job(tmp_path, session, fake.url, emails(30))
    await job.run(policy=replace(SIMULATED_FOLLOW, backoff_initial=0.02, backoff_max=0.05))
    assert posts(fake) == [202]
    assert job.states() == [BatchState.DONE]
    job.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"page_fault": 410},
        {"page_fault": 400},
        {"page_fault": 404},
        {"page_fault": 302},
    ],
    ids=lambda fault: f"page_{next(iter(fault.values()))}",
)
async def test_a_results_page_failing_for_good_settles_that_batch_and_the_others_finish(
    fake_api: StartFake,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    backend: Backend,
    fault: dict,
) -> None:
    fake = await fake_api(retry_after=0.05, **fault)
    # 150 + 100 emails: the first batch has a second page (which fails), the second has not.
    job = Job(tmp_path, session, fake.url, emails(250), chunk=150, backend=backend)
    counters = await job.run()
    assert job.states() == [BatchState.FAILED, BatchState.DONE]
    first, second = job.store.batches(job.job_id)
    assert len(job.store.batch_verdicts(first.id)) == 100  # the page it could read is kept
    assert len(job.store.batch_verdicts(second.id)) == 100
    assert "gave up on this batch" in (first.error or "")
    assert counters.stop_reason is None
    # Completed and paid: never bought again.
    assert posts(fake) == [202, 202]
    assert counters.possible_double_charges == 0
    job.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"unknown_status": "paused", "queue_seconds": 60},
        {"unknown_status": "", "queue_seconds": 60},
        {"get_fault": 400},
        {"get_fault": 410},
        {"get_fault": 301},
    ],
    ids=["unknown_status", "missing_status", "poll_400", "poll_410", "poll_301"],
)
async def test_a_poll_failing_for_good_fails_that_batch_and_the_run_ends(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, fault: dict
) -> None:
    fake = await fake_api(retry_after=0.05, **fault)
    job = Job(tmp_path, session, fake.url, emails(30))
    counters = await job.run()
    assert job.states() == [BatchState.FAILED]
    assert posts(fake) == [202]
    assert counters.stop_reason is None
    job.close()


async def test_failures_are_counted_across_runs(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    fake = await fake_api(retry_after=0.05, get_fault=410)
    clock = ManualClock(start=1_700_000_000.0)
    job = Job(tmp_path, session, fake.url, emails(30), wall_clock=clock, backend=backend)
    policy = FollowPolicy(failures=3, span=600.0, backoff_initial=0.05, backoff_max=0.05)
    # The first run stops (its deadline) while the bound in time is not reached yet.
    await job.run(policy=policy, deadline=time.monotonic() + 0.5)
    assert job.states() == [BatchState.RUNNING]
    (batch,) = job.store.batches(job.job_id)
    assert job.store.follow_failures(batch.id) >= 3
    clock.advance(601)
    # The next run, ten minutes on: one more failure settles the batch at once.
    gets_before = sum(r.method == "GET" for r in fake.api.log)
    await job.run(policy=policy)
    assert job.states() == [BatchState.FAILED]
    assert sum(r.method == "GET" for r in fake.api.log) == gets_before + 1
    job.close()


async def test_a_success_resets_the_count(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake = await fake_api(retry_after=0.05, not_found_polls=2)
    job = Job(tmp_path, session, fake.url, emails(30))
    await job.run(policy=replace(FAST_FOLLOW, failures=3, span=0.0))
    (batch,) = job.store.batches(job.job_id)
    assert batch.state is BatchState.DONE
    assert job.store.follow_failures(batch.id) == 0
    job.close()


# -- a POST of unknown fate opens no new exposure (issue 11, section 5) ---------------------


@pytest.mark.parametrize("fault", ["drop", "latency"])
async def test_a_hung_api_costs_at_most_one_ambiguous_batch(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, fault: str
) -> None:
    options = {"drop": 1.0} if fault == "drop" else {"latency": 0.6}
    fake = await fake_api(retry_after=0.05, **options)
    job = Job(tmp_path, session, fake.url, emails(20))
    counters = await job.run(timeout=60, retry=replace(FAST_RETRY, timeout=0.2))
    assert posts(fake) in ([0], [202])  # dropped (logged as 0), or answered too late
    assert counters.possible_double_charges == 20
    assert "stopped answering" in (counters.stop_reason or "")
    assert job.states() == [BatchState.PLANNED]  # a rerun resends it, counted
    job.close()


# -- quota and exit codes that tell the truth (issue 11, section 6) --------------------------


async def test_a_refused_post_gives_its_quota_back(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    refused = "lead00003@company3.com"
    fake = await fake_api(retry_after=0.05, rejects=frozenset({refused}))
    job = Job(
        tmp_path, session, fake.url, emails(50), chunk=50, usage=Limit(50, 3600.0), backend=backend
    )
    counters = await job.run(deadline=time.monotonic() + 5)
    # The old engine kept the refused 50 in the window, so the 49 waited an hour.
    assert posts(fake) == [400, 202]
    assert counters.stop_reason is None
    assert job.scheduler.usage_in_window() == 49
    assert job.verdicts()[refused] == "invalid_syntax"
    job.close()


async def test_usage_refusals_give_their_quota_back(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # The server's window is tighter than ours: its 429s must not eat our quota too.
    fake = await fake_api(retry_after=0.05, usage_limit=Limit(100, 0.5))
    job = Job(tmp_path, session, fake.url, emails(300), chunk=100, usage=Limit(1000, 30.0))
    await job.run()
    assert 429 in posts(fake)
    assert posts(fake).count(202) == 3
    assert job.scheduler.usage_in_window() == 300
    job.close()


async def test_insufficient_credits_tries_smaller_batches_then_stops(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    fake = await fake_api(retry_after=0.05, credits=300)
    job = Job(tmp_path, session, fake.url, emails(478), usage=Limit(1000, 60.0), backend=backend)
    counters = await job.run()
    assert counters.out_of_credits
    assert fake.api.summary().credits_spent == 300
    assert len(job.verdicts()) == 300
    assert job.scheduler.usage_in_window() == 300  # the refused tries cost no quota
    job.close()


async def test_a_400_naming_no_item_is_never_settled(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    # The server's usage limit is below ours: it refuses a batch of 1,000 as a whole.
    fake = await fake_api(retry_after=0.05, usage_limit=Limit(300, 0.3))
    job = Job(tmp_path, session, fake.url, emails(1000), usage=Limit(1000, 1.0), backend=backend)
    counters = await job.run()
    assert posts(fake)[:2] == [400, 400]  # 1,000 then 500 refused; 250 fits
    assert len(job.verdicts()) == 1000
    assert "failed" not in job.verdicts().values()
    assert counters.stop_reason is None
    job.close()


# -- a resumed fetch keeps its siblings' verdicts (issue 11, section 8) ----------------------


async def test_siblings_of_pages_committed_before_a_restart_get_their_verdicts(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    fake = await fake_api(retry_after=0.05)
    # `a+news@` comes back as `a@`, on the first page (results are sorted by email).
    addresses = ["a@company0.com", "a+news@company0.com", *emails(150)]
    job = Job(tmp_path, session, fake.url, addresses, backend=backend)
    (batch,) = job.store.batches(job.job_id)
    client = make_client(session, fake.url)
    submitted = job.store.batch_emails(batch.id)
    job.store.mark_submitting(batch.id)
    started = await client.start(submitted)
    job.store.mark_running(batch.id, remote_id=started.id, remote_href=started.href)
    done = await client.wait(started)
    job.store.mark_fetching(batch.id, first_href=done.href, remote_status=done.status)
    # A run committed the first page, then was killed.
    matcher = ResultMatcher(submitted)
    verdicts = [
        (email, r.result, r.catch_all) for r in done.results for email in matcher.match(r.email)
    ]
    job.store.record_page(batch.id, verdicts, next_href=done.next_href)
    assert "a@company0.com" in dict((e, r) for e, r, _ in verdicts)
    await job.run()
    assert job.states() == [BatchState.DONE]
    assert job.verdicts()["a+news@company0.com"] == verdict_for("a@company0.com")[0]
    job.close()


async def test_a_post_retried_after_a_429_gives_the_refused_try_its_quota_back(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Seed 1 at one chance in two: the first request (the POST) gets a spurious 429, the
    # second (the client's retry of it) goes through.
    fake = await fake_api(retry_after=0.05, spurious_429=0.5, seed=1)
    job = Job(tmp_path, session, fake.url, emails(100), chunk=100, usage=Limit(100, 3600.0))
    counters = await job.run(deadline=time.monotonic() + 10)
    # The old engine kept the refused try's 100 stamped: the retry waited for an hour.
    assert posts(fake) == [429, 202]
    assert counters.stop_reason is None
    assert job.scheduler.usage_in_window() == 100
    job.close()


# -- many batches paged at once, each matched through the store (issue 11, section 7) -------


async def test_many_batches_followed_at_once_each_get_every_verdict(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    fake = await fake_api(retry_after=0.05, upper_case_results=True, emails_per_second=1e6)
    # `+tag` spellings come back as their canonical one, some submitted too and some not,
    # some in the same batch as it and some in another; every result is in upper case.
    plain = emails(600)
    tagged = [e.replace("@", "+news@") for e in plain[::3]] + ["solo+x@company9.com"]
    job = Job(
        tmp_path,
        session,
        fake.url,
        [*plain, *tagged],
        chunk=50,
        usage=Limit(10**6, 1.0),
        backend=backend,
    )
    counters = await job.run()  # the usage limit admits every batch at once
    assert counters.batches_submitted == len(job.states()) == 17
    assert set(job.states()) == {BatchState.DONE}
    verdicts = job.verdicts()
    assert len(verdicts) == len(plain) + len(tagged)
    assert all(verdicts[e] == verdict_for(e)[0] for e in verdicts)
    job.close()


async def test_a_validation_canceled_through_the_api_is_given_back_not_bought_again(
    fake_api: StartFake, session: aiohttp.ClientSession, tmp_path: Path, backend: Backend
) -> None:
    # Its unprocessed emails go back into a planned batch (so they count as pending): the
    # run that sees the cancel must not POST them again at once; the next run does.
    fake = await fake_api(retry_after=0.05, emails_per_second=100)
    job = Job(tmp_path, session, fake.url, emails(200), backend=backend)
    run = asyncio.create_task(job.run())

    async def cancel_once_running() -> None:
        while not (running := job.store.batches(job.job_id, BatchState.RUNNING)):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # some of it processed, most not
        href = running[0].remote_href
        assert href is not None
        await make_client(session, fake.url).cancel(href)

    await asyncio.wait_for(cancel_once_running(), 10)
    counters = await run
    assert counters.stop_reason == "canceled"
    assert posts(fake) == [202]
    progress = job.store.progress(job.job_id)
    charged = fake.api.summary().credits_spent
    assert 0 < progress.resolved == charged < 200
    assert (progress.emails, progress.pending) == (200, 200 - charged)
    assert progress.batches == {"done": 1, "planned": 1}
    job.close()

"""The store-side steps of a run, kept apart from the orchestration in validate.py.

Bulk database work (planning, reading the verdicts back, pruning the cache) runs in a worker
thread on a store of its own (a store's connection stays in the thread that opened it), so
the event loop keeps polling and answering signals meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..api.client import ValidationClient
from ..errors import AmpleBatchError
from ..files.join import Verdicts
from ..jobs.backend import open_store
from ..jobs.engine import Engine
from ..jobs.plan import plan_emails
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job, Progress
from ..jobs.stale import KEEP_THE_CACHE, StaleVerdicts
from ..limits import Limit
from ..quota.scheduler import Scheduler
from ..recheck import NO_RECHECK, RecheckPolicy


def note_run(store: JobStore, job: Job, limit: Limit) -> None:
    """What `status` shows of a live run: its process, and the pace its quota allows."""
    run = {
        "pid": os.getpid(),
        "started_at": time.time(),
        "emails_per_second": limit.count / limit.period,
    }
    store.update_job(job.id, state=job.state, stats={**job.stats, "run": run})


async def cancel_validations(
    store: JobStore, job_id: str, client: ValidationClient, scheduler: Scheduler
) -> int:
    """PATCH the job's running validations to canceled, then page in what they did (the
    partial results are kept; the rest goes back to the plan). Returns how many."""
    engine = Engine(store, job_id, client, scheduler, stop=asyncio.Event())
    running = store.batches(job_id, BatchState.RUNNING)
    for batch in running:
        assert batch.remote_href is not None
        validation = await client.cancel(batch.remote_href)
        await engine.follow(batch, validation)
    for batch in store.batches(job_id, BatchState.FETCHING):
        await engine.follow(batch)
    return len(running)


@dataclass(frozen=True)
class PlannedJob:
    """What planning left for the engine."""

    to_submit: int
    """Emails to buy (adopted ones excluded)."""
    rechecked: dict[str, int]
    """Of those, how many the re-check policy sends again, by verdict kind."""


def plan_job(
    state_dir: Path,
    job: Job,
    unique: list[str],
    chunk: int,
    recheck: RecheckPolicy = NO_RECHECK,
) -> PlannedJob:
    """Plan the job (in a worker thread, on its own connection): what to buy.

    Emails in flight in another job on the same key are adopted, not bought (inflight.py).
    Verdicts the re-check policy finds stale, the job's own included, are bought again
    (jobs/stale.py): released from the job's batches and deleted from the cache first.
    """
    with open_store(state_dir) as store:
        stale = None
        if recheck:
            stale = StaleVerdicts.read(store, recheck, now=time.time(), wanted=set(unique))
            own = stale.own(store.job_verdicts(job.id))
            if own:
                store.release_stale(job.id, own, checked_before=KEEP_THE_CACHE)
        fresh = store.fresh_verdicts(job.cache_cutoff)
        if stale is not None:
            fresh = stale.current(fresh)
        plan = plan_emails(unique, store.batched_emails(job.id), fresh)
        if stale is not None:
            for checked_before, emails in stale.to_delete(plan.new).items():
                store.release_stale(job.id, emails, checked_before=checked_before)
        adopted = store.adopt_in_flight(job.id, plan.new)
        new = [e for e in plan.new if e not in adopted] if adopted else plan.new
        store.plan(job.id, cached=plan.cached, new=new, chunk_size=chunk)
        rechecked = stale.rechecked(new) if stale is not None else {}
        return PlannedJob(len(new), rechecked)


def progress(state_dir: Path, job_id: str) -> Progress:
    with open_store(state_dir) as store:
        return store.progress(job_id)


def prune_cache(state_dir: Path, cache_ttl: float, recheck: RecheckPolicy = NO_RECHECK) -> None:
    """Housekeeping after the job's outcome is recorded: a locked or full database here must
    not turn that outcome's exit code into another (the next run prunes instead). The store
    raises only our errors (errors.State*), whatever its backend.

    Verdicts younger than the longest re-check rule are kept too: a rule judges the job's
    own verdicts by their cached check time, and a pruned one counts as stale."""
    with contextlib.suppress(AmpleBatchError, OSError), open_store(state_dir) as store:
        store.prune_verdicts(max(cache_ttl, recheck.longest))


def job_verdicts(state_dir: Path, job_id: str) -> Verdicts:
    with open_store(state_dir) as store:
        return Verdicts.from_rows(store.job_verdicts(job_id), normalised=True)


def job_double_charges(store: JobStore, job_id: str) -> int:
    job = store.get_job(job_id)
    return job.possible_double_charges if job else 0


def remove_stale_temp_files(target: Path) -> None:
    """A run killed mid-write (SIGKILL cannot be caught) leaves its temporary file behind;
    the job lock guarantees no other run is writing this output now."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()

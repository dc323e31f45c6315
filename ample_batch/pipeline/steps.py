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
from pathlib import Path

from ..api.client import ValidationClient
from ..errors import AmpleBatchError
from ..files.join import Verdicts
from ..jobs.backend import Where, open_store
from ..jobs.engine import Engine
from ..jobs.locks import JobLocks
from ..jobs.plan import plan_emails
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job, Progress
from ..limits import Limit
from ..quota.scheduler import Scheduler


def note_run(store: JobStore, job: Job, limit: Limit) -> None:
    """What `status` shows of a live run: its process, and the pace its quota allows."""
    run = {
        "pid": os.getpid(),
        "started_at": time.time(),
        "emails_per_second": limit.count / limit.period,
    }
    store.update_job(job.id, state=job.state, stats={**job.stats, "run": run})


async def cancel_validations(
    store: JobStore, job_id: str, client: ValidationClient, scheduler: Scheduler, locks: JobLocks
) -> int:
    """PATCH the job's running validations to canceled, then page in what they did (the
    partial results are kept; the rest goes back to the plan). Returns how many."""
    engine = Engine(store, job_id, client, scheduler, stop=asyncio.Event(), locks=locks)
    running = store.batches(job_id, BatchState.RUNNING)
    for batch in running:
        assert batch.remote_href is not None
        validation = await client.cancel(batch.remote_href)
        await engine.follow(batch, validation)
    for batch in store.batches(job_id, BatchState.FETCHING):
        await engine.follow(batch)
    return len(running)


def plan_job(state: Where, job: Job, unique: list[str], chunk: int) -> int:
    """Plan the job (in a worker thread, on its own connection); returns emails to buy.

    Emails in flight in another job on the same key are adopted, not bought (inflight.py).
    """
    with open_store(state) as store:
        plan = plan_emails(
            unique, store.batched_emails(job.id), store.fresh_verdicts(job.cache_cutoff)
        )
        adopted = store.adopt_in_flight(job.id, plan.new)
        new = [e for e in plan.new if e not in adopted] if adopted else plan.new
        store.plan(job.id, cached=plan.cached, new=new, chunk_size=chunk)
        return len(new)


def progress(state: Where, job_id: str) -> Progress:
    with open_store(state) as store:
        return store.progress(job_id)


def prune_cache(state: Where, cache_ttl: float) -> None:
    """Housekeeping after the job's outcome is recorded: a locked or full database here must
    not turn that outcome's exit code into another (the next run prunes instead). The store
    raises only our errors (errors.State*), whatever its backend."""
    with contextlib.suppress(AmpleBatchError, OSError), open_store(state) as store:
        store.prune_verdicts(cache_ttl)


def job_verdicts(state: Where, job_id: str) -> Verdicts:
    with open_store(state) as store:
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

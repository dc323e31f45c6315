"""The store-side steps of a run, kept apart from the orchestration (validate.py, job_run.py).

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
from typing import Any

from ..api.client import ValidationClient
from ..errors import AmpleBatchError, NotFound
from ..files.identity import FileIdentity, fingerprint_with_identity
from ..files.spec import InputSpec
from ..files.verdicts import Verdicts
from ..jobs.backend import Where, has_store, open_store
from ..jobs.engine import Engine
from ..jobs.follow import FollowPolicy
from ..jobs.locks import JobLocks
from ..jobs.plan import plan_emails
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job, Progress
from ..jobs.stale import KEEP_THE_CACHE, StaleVerdicts
from ..limits import Limit
from ..quota.scheduler import Scheduler
from ..recheck import NO_RECHECK, RecheckPolicy
from .job_states import RUNNING


def note_run(store: JobStore, job: Job, limit: Limit) -> None:
    """What `status` shows of a live run: its process, and the pace its quota allows."""
    run = {
        "pid": os.getpid(),
        "started_at": time.time(),
        "emails_per_second": limit.count / limit.period,
    }
    store.update_job(job.id, state=job.state, stats={**job.stats, "run": run})


def mark_validating(store: JobStore, job_id: str) -> None:
    """Record that a run of the job began buying: `running` until the run records how it
    ended. A run killed (SIGKILL, a second Ctrl-C, a lost machine) never does, so `status`
    shows such a job, with no live run holding it, as `stopped` (pipeline/jobs.py)."""
    job = store.get_job(job_id)
    if job is not None:  # the run holds the job's lock: no other process writes its row
        store.update_job(job_id, state=RUNNING, stats=job.stats)


async def cancel_validations(
    store: JobStore,
    job_id: str,
    client: ValidationClient,
    scheduler: Scheduler,
    locks: JobLocks,
    *,
    simulate: bool = False,
) -> int:
    """PATCH the job's running validations to canceled, then page in what they did (the
    partial results are kept; the rest goes back to the plan). Returns how many.

    `simulate`: a --simulate job, whose earlier runs' batches died with their fakes: one the
    simulated API does not know has nothing to cancel and nothing paid, so its emails go
    back to the plan as a canceled batch's would."""
    policy = FollowPolicy(resend_unknown=simulate)
    engine = Engine(
        store, job_id, client, scheduler, stop=asyncio.Event(), follow_policy=policy, locks=locks
    )
    running = store.batches(job_id, BatchState.RUNNING)
    for batch in running:
        assert batch.remote_href is not None
        try:
            validation = await client.cancel(batch.remote_href)
        except NotFound:
            if not simulate:
                raise
            store.release_unresolved(batch.id, error="canceled")
            continue
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
    state: Where,
    job: Job,
    unique: list[str],
    chunk: int,
    recheck: RecheckPolicy = NO_RECHECK,
) -> PlannedJob:
    """Plan the job (in a worker thread, on its own connection): what to buy.

    Emails in flight in another job on the same key are adopted, not bought (inflight.py).
    Verdicts the re-check policy finds stale, the job's own included, are bought again
    (jobs/stale.py): released from the job's batches and deleted from the cache first.
    A re-entry whose plan is already in the store keeps it (`_planned_already`).
    """
    with open_store(state) as store:
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
        if plan.cached or adopted or not _planned_already(store, job.id, new, chunk):
            store.plan(job.id, cached=plan.cached, new=new, chunk_size=chunk)
        rechecked = stale.rechecked(new) if stale is not None else {}
        return PlannedJob(len(new), rechecked)


def _planned_already(store: JobStore, job_id: str, new: list[str], chunk: int) -> bool:
    """Whether the job's unsubmitted batches hold exactly `new`, cut as `plan` would cut it.

    Then re-planning would delete and insert the same rows: on an hourly cron re-entry of a
    1M-row list, the largest part of the start-up, for nothing. Batch sizes are checked
    first, so a changed --chunk-size, or a plan that differs, costs one cheap query; the
    emails are then compared exactly, never inferred.
    """
    planned = [b for b in store.batches(job_id, BatchState.PLANNED) if b.attempt == 1]
    if sum(b.size for b in planned) != len(new) or len(planned) != -(-len(new) // chunk):
        return False
    if any(b.size > chunk for b in planned):
        return False
    emails: set[str] = set()
    for batch in planned:
        emails.update(store.batch_emails(batch.id))
    return len(emails) == len(new) and emails.issuperset(new)


def input_fingerprint(state: Where, spec: InputSpec) -> tuple[str, FileIdentity | None]:
    """The input's fingerprint and identity (`files.identity`): taken from the job that
    last saw this very file when its identity still matches, else hashed in full.

    A cron re-entry of an unchanged 1M-row list so skips reading the whole file before
    the job lock; any doubt (another size, time, inode, head or tail; a store that cannot
    be read here) hashes it as before.
    """
    current = FileIdentity.of(spec.path)
    if current is not None and has_store(state):
        input_path = str(spec.path.resolve())
        with contextlib.suppress(AmpleBatchError), open_store(state) as store:
            for job in store.jobs():
                if (
                    job.input_path == input_path
                    and job.email_column == spec.email_column
                    and FileIdentity.from_dict(job.stats.get(IDENTITY_KEY)) == current
                ):
                    return job.fingerprint, current
    return fingerprint_with_identity(spec)


IDENTITY_KEY = "input_file"
"""Where a job's stats keep the identity of the file its fingerprint was taken from."""


def identity_stats(job: Job, identity: FileIdentity | None) -> dict[str, Any]:
    """The stats entry to record with the run's summary: this run's trusted identity, else
    the one the job had (still true of the same content)."""
    if identity is not None:
        return {IDENTITY_KEY: identity.as_dict()}
    known = job.stats.get(IDENTITY_KEY)
    return {IDENTITY_KEY: known} if known is not None else {}


def progress(state: Where, job_id: str) -> Progress:
    with open_store(state) as store:
        return store.progress(job_id)


def prune_cache(state: Where, cache_ttl: float, recheck: RecheckPolicy = NO_RECHECK) -> None:
    """Housekeeping after the job's outcome is recorded: a locked or full database here must
    not turn that outcome's exit code into another (the next run prunes instead). The store
    raises only our errors (errors.State*), whatever its backend.

    Verdicts younger than the longest re-check rule are kept too: a rule judges the job's
    own verdicts by their cached check time, and a pruned one counts as stale."""
    with contextlib.suppress(AmpleBatchError, OSError), open_store(state) as store:
        store.prune_verdicts(max(cache_ttl, recheck.longest))


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

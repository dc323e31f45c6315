"""Emails already in flight in another job on the same key: adopt them, never buy them again.

A regenerated input (rows added, order changed) is a new job, and two jobs may share emails.
An email in another job's open batch (submitting, running or fetching) on the same API
identity (key id and base URL) is not bought again: the job gets a `waiting` batch that
adopts it, and takes its verdict from the cache once the owning batch settles. If the
owning job's run is gone (its lock is free), this run follows that batch itself, so paid
results always reach the cache. Whatever the owner ends without a verdict is planned again
here.

    planning:    adopt(db, job, candidates)         at plan time
    submitting:  claim_or_adopt(db, batch, now)     in the same transaction as `submitting`
    running:     await_adopted(engine, batch)       one task per waiting batch
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .protocol import JobStore
from .records import OPEN_STATES, Batch, BatchState

if TYPE_CHECKING:
    from .engine import Engine

POLL_SECONDS = 1.0
"""How often a waiting batch looks at the batch it adopts (a store read, no request)."""


async def await_adopted(engine: Engine, batch: Batch, *, poll: float = POLL_SECONDS) -> None:
    """Wait for the batch a waiting batch adopts to settle, following it if its run is gone."""
    store = engine.store
    assert batch.adopts is not None
    while True:
        owner = store.find_batch(batch.adopts)
        if owner is None or owner.state not in OPEN_STATES:
            break
        with engine.locks.try_job_lock(owner.job_id, following=True) as free:
            if free:
                await _take_over(engine, store, owner.id, batch)
                break
        if batch.size == 0:
            break  # nothing of ours in it, and its own run is following it
        await asyncio.sleep(poll)
    store.settle_adopted(batch.id)


async def _take_over(engine: Engine, store: JobStore, owner_id: int, batch: Batch) -> None:
    """Holding the owner job's lock: do for its open batch what its resumed run would."""
    owner = store.find_batch(owner_id)  # read again, under the lock
    if owner is None:
        return
    if owner.state is BatchState.SUBMITTING:
        # Its run died mid-POST: the batch may exist, and there is no way to look it up. Its
        # emails are bought again (here, or by that job's next run): possibly twice.
        store.note_possible_double_charges(owner.job_id, owner.size)
        store.back_to_planned(owner.id, error="the run died mid-POST; another job resent it")
        shared = len(store.batch_emails(batch.id, unresolved=True))
        if shared:
            store.note_possible_double_charges(engine.job_id, shared)
            engine.counters.possible_double_charges += shared
    elif owner.state in (BatchState.RUNNING, BatchState.FETCHING):
        await engine.follow(owner)

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
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .locks import try_job_lock
from .schema import OPEN_STATES, Batch, BatchState

if TYPE_CHECKING:
    from .execute import Engine
    from .store import Store

POLL_SECONDS = 1.0
"""How often a waiting batch looks at the batch it adopts (a store read, no request)."""

_OPEN = ",".join(f"'{state}'" for state in OPEN_STATES)


def _open_elsewhere(db: sqlite3.Connection, job_id: str) -> list[sqlite3.Row]:
    """Open API batches of other jobs that buy through the same key id and base URL."""
    return db.execute(
        "SELECT b.id, b.job_id FROM batches b JOIN jobs j ON j.id = b.job_id"
        " JOIN jobs me ON me.id = ? WHERE b.job_id != me.id AND me.key_id IS NOT NULL"
        " AND j.key_id = me.key_id AND j.base_url = me.base_url AND b.source = 'api'"
        f" AND b.state IN ({_OPEN}) ORDER BY b.id",
        (job_id,),
    ).fetchall()


def _unresolved(db: sqlite3.Connection, batch_id: int) -> list[str]:
    rows = db.execute(
        "SELECT email FROM batch_emails WHERE batch_id = ? AND result IS NULL", (batch_id,)
    )
    return [row["email"] for row in rows]


def _new_waiting(db: sqlite3.Connection, job_id: str, owner: int, size: int, now: float) -> int:
    cursor = db.execute(
        "INSERT INTO batches (job_id, source, state, attempt, size, updated_at, adopts)"
        " VALUES (?, 'adopted', ?, 1, ?, ?, ?)",
        (job_id, BatchState.WAITING, size, now, owner),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def adopt(db: sqlite3.Connection, job_id: str, candidates: Iterable[str], now: float) -> set[str]:
    """At plan time: the candidates in flight elsewhere go into waiting batches; returns them.

    An open batch elsewhere that shares nothing still gets an empty waiting batch (once), so
    this run follows it if its own run is gone: its paid verdicts reach the cache.
    """
    todo = set(candidates)
    adopted: set[str] = set()
    known = {
        row["adopts"]
        for row in db.execute(
            "SELECT adopts FROM batches WHERE job_id = ? AND adopts IS NOT NULL", (job_id,)
        )
    }
    for owner in _open_elsewhere(db, job_id):
        shared = [e for e in _unresolved(db, owner["id"]) if e in todo and e not in adopted]
        if not shared and owner["id"] in known:
            continue
        batch_id = _new_waiting(db, job_id, owner["id"], len(shared), now)
        db.executemany(
            "INSERT INTO batch_emails (batch_id, email) VALUES (?,?)",
            ((batch_id, e) for e in shared),
        )
        adopted.update(shared)
    return adopted


@dataclass(frozen=True)
class Claim:
    """What `claim_or_adopt` changed in a batch about to be POSTed."""

    waiting: list[int] = field(default_factory=list)
    """New waiting batches, adopting emails another job has in flight."""
    changed: bool = False
    """Emails left the batch or gained a verdict: it must be read again, not POSTed as is."""


def claim_or_adopt(db: sqlite3.Connection, batch_id: int, now: float) -> Claim:
    """Before a POST: take what another job settled or has in flight since this one planned.

    Emails with a verdict cached since the batch was planned (a concurrent job bought them)
    take it; emails now in another job's open batch move into waiting batches adopting them.
    """
    row = db.execute(
        "SELECT b.job_id, MIN(b.updated_at, j.cache_cutoff) AS since FROM batches b"
        " JOIN jobs j ON j.id = b.job_id WHERE b.id = ?",
        (batch_id,),
    ).fetchone()
    job_id = row["job_id"]
    took = _take_cached(db, batch_id, row["since"])
    owners = _open_elsewhere(db, job_id)
    if not owners:
        return Claim(changed=took > 0)
    mine = set(_unresolved(db, batch_id))
    created: list[int] = []
    moved = 0
    for owner in owners:
        shared = [e for e in _unresolved(db, owner["id"]) if e in mine]
        if not shared:
            continue
        new_id = _new_waiting(db, job_id, owner["id"], len(shared), now)
        db.executemany(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND email = ?",
            ((new_id, batch_id, e) for e in shared),
        )
        mine.difference_update(shared)
        moved += len(shared)
        created.append(new_id)
    if moved:
        db.execute("UPDATE batches SET size = size - ? WHERE id = ?", (moved, batch_id))
    return Claim(waiting=created, changed=took > 0 or moved > 0)


def _take_cached(db: sqlite3.Connection, batch_id: int, since: float) -> int:
    """Unresolved emails of the batch take verdicts cached at or after `since`."""
    return db.execute(
        "UPDATE batch_emails SET result = v.result, catch_all = v.catch_all FROM verdicts v"
        " WHERE batch_emails.batch_id = ? AND batch_emails.result IS NULL"
        " AND v.email = batch_emails.email AND v.checked_at >= ?",
        (batch_id, since),
    ).rowcount


def settle_adopted(store: Store, batch_id: int) -> int:
    """The adopted batch is over: take the verdicts the cache gained since it was adopted;
    whatever has none is planned again in this job. Returns how many were planned again."""
    with store._transaction() as db:
        since = db.execute("SELECT updated_at FROM batches WHERE id = ?", (batch_id,)).fetchone()
        _take_cached(db, batch_id, since["updated_at"])
        left = _unresolved(db, batch_id)
        now = store._clock()
        if left:
            job_id = db.execute("SELECT job_id FROM batches WHERE id = ?", (batch_id,)).fetchone()
            new_id = store._new_batch(
                db, job_id["job_id"], BatchState.PLANNED, len(left), "api", now
            )
            db.execute(
                "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND result IS NULL",
                (new_id, batch_id),
            )
        db.execute(
            "UPDATE batches SET state = ?, size = size - ?, updated_at = ? WHERE id = ?",
            (BatchState.DONE, len(left), now, batch_id),
        )
    return len(left)


async def await_adopted(engine: Engine, batch: Batch, *, poll: float = POLL_SECONDS) -> None:
    """Wait for the batch a waiting batch adopts to settle, following it if its run is gone."""
    store = engine.store
    assert batch.adopts is not None
    while True:
        owner = store.find_batch(batch.adopts)
        if owner is None or owner.state not in OPEN_STATES:
            break
        with try_job_lock(store.state_dir, owner.job_id, following=True) as free:
            if free:
                await _take_over(engine, store, owner.id, batch)
                break
        if batch.size == 0:
            break  # nothing of ours in it, and its own run is following it
        await asyncio.sleep(poll)
    settle_adopted(store, batch.id)


async def _take_over(engine: Engine, store: Store, owner_id: int, batch: Batch) -> None:
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

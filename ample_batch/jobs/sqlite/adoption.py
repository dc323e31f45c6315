"""The SQL of adoption: a job's emails already in flight in another job's open batch on
the same key are adopted by a `waiting` batch, never bought again (see `inflight`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from ..records import OPEN_STATES, BatchState, Claim

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


def unresolved(db: sqlite3.Connection, batch_id: int) -> list[str]:
    """The batch's emails without a verdict, bytewise (the primary key's order)."""
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
        shared = [e for e in unresolved(db, owner["id"]) if e in todo and e not in adopted]
        if not shared and owner["id"] in known:
            continue
        batch_id = _new_waiting(db, job_id, owner["id"], len(shared), now)
        db.executemany(
            "INSERT INTO batch_emails (batch_id, email) VALUES (?,?)",
            ((batch_id, e) for e in shared),
        )
        adopted.update(shared)
    return adopted


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
    mine = set(unresolved(db, batch_id))
    created: list[int] = []
    moved = 0
    for owner in owners:
        shared = [e for e in unresolved(db, owner["id"]) if e in mine]
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


def settle_adopted(
    db: sqlite3.Connection, batch_id: int, now: float, new_batch: Callable[..., int]
) -> int:
    """The adopted batch is over: take the verdicts the cache gained since it was adopted;
    whatever has none is planned again in this job (a batch from `new_batch`). Returns how
    many were planned again: the caller moves the batch to done, that much smaller."""
    since = db.execute("SELECT updated_at FROM batches WHERE id = ?", (batch_id,)).fetchone()
    _take_cached(db, batch_id, since["updated_at"])
    left = unresolved(db, batch_id)
    if left:
        job_id = db.execute("SELECT job_id FROM batches WHERE id = ?", (batch_id,)).fetchone()
        new_id = new_batch(db, job_id["job_id"], BatchState.PLANNED, len(left), "api", now)
        db.execute(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND result IS NULL",
            (new_id, batch_id),
        )
    return len(left)

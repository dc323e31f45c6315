"""The PostgreSQL SQL of adoption, the twin of sqlite/adoption.py: a job's emails already in flight
in another job's open batch on the same key are adopted by a `waiting` batch, never bought
again (see `inflight`). Every function runs inside the caller's serialised transaction
(`PgConnection.write`), so the open batches it reads cannot change under it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..records import OPEN_STATES, BatchState, Claim
from .conn import by_name

if TYPE_CHECKING:
    from ...pg import Connection

_OPEN = ",".join(f"'{state}'" for state in OPEN_STATES)


def _open_elsewhere(db: Connection, job_id: str) -> list[int]:
    """Open API batches of other jobs that buy through the same key id and base URL."""
    rows = db.execute(
        "SELECT b.id FROM batches b JOIN jobs j ON j.id = b.job_id"
        " JOIN jobs me ON me.id = %s WHERE b.job_id <> me.id AND me.key_id IS NOT NULL"
        " AND j.key_id = me.key_id AND j.base_url = me.base_url AND b.source = 'api'"
        f" AND b.state IN ({_OPEN}) ORDER BY b.id",
        (job_id,),
    ).fetchall()
    return [int(batch_id) for (batch_id,) in rows]


def unresolved(db: Connection, batch_id: int) -> list[str]:
    """The batch's emails without a verdict, in the SQLite store's order (bytewise)."""
    rows = db.execute(
        "SELECT email FROM batch_emails WHERE batch_id = %s AND result IS NULL"
        ' ORDER BY email COLLATE "C"',
        (batch_id,),
    ).fetchall()
    return [email for (email,) in rows]


def _new_waiting(db: Connection, job_id: str, owner: int, size: int, now: float) -> int:
    row = db.execute(
        "INSERT INTO batches (job_id, source, state, attempt, size, updated_at, adopts)"
        " VALUES (%s, 'adopted', %s, 1, %s, %s, %s) RETURNING id",
        (job_id, BatchState.WAITING.value, size, now, owner),
    ).fetchone()
    assert row is not None
    return int(row[0])


def adopt(db: Connection, job_id: str, candidates: Iterable[str], now: float) -> set[str]:
    """At plan time: the candidates in flight elsewhere go into waiting batches; returns them.

    An open batch elsewhere that shares nothing still gets an empty waiting batch (once), so
    this run follows it if its own run is gone: its paid verdicts reach the cache.
    """
    todo = set(candidates)
    adopted: set[str] = set()
    known = {
        int(owner)
        for (owner,) in db.execute(
            "SELECT adopts FROM batches WHERE job_id = %s AND adopts IS NOT NULL", (job_id,)
        )
    }
    for owner in _open_elsewhere(db, job_id):
        shared = [e for e in unresolved(db, owner) if e in todo and e not in adopted]
        if not shared and owner in known:
            continue
        batch_id = _new_waiting(db, job_id, owner, len(shared), now)
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO batch_emails (batch_id, email) VALUES (%s, %s)",
                [(batch_id, e) for e in shared],
            )
        adopted.update(shared)
    return adopted


def claim_or_adopt(db: Connection, batch_id: int, now: float) -> Claim:
    """Before a POST: take what another job settled or has in flight since this one planned.

    Emails with a verdict cached since the batch was planned (a concurrent job bought them)
    take it; emails now in another job's open batch move into waiting batches adopting them.
    """
    row = (
        by_name(db)
        .execute(
            "SELECT b.job_id, LEAST(b.updated_at, j.cache_cutoff) AS since FROM batches b"
            " JOIN jobs j ON j.id = b.job_id WHERE b.id = %s",
            (batch_id,),
        )
        .fetchone()
    )
    if row is None:
        raise KeyError(f"no batch {batch_id}")
    job_id = row["job_id"]
    took = take_cached(db, batch_id, row["since"])
    owners = _open_elsewhere(db, job_id)
    if not owners:
        return Claim(changed=took > 0)
    mine = set(unresolved(db, batch_id))
    created: list[int] = []
    moved = 0
    for owner in owners:
        shared = [e for e in unresolved(db, owner) if e in mine]
        if not shared:
            continue
        new_id = _new_waiting(db, job_id, owner, len(shared), now)
        db.execute(
            "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND email = ANY(%s)",
            (new_id, batch_id, shared),
        )
        mine.difference_update(shared)
        moved += len(shared)
        created.append(new_id)
    if moved:
        db.execute("UPDATE batches SET size = size - %s WHERE id = %s", (moved, batch_id))
    return Claim(waiting=created, changed=took > 0 or moved > 0)


def take_cached(db: Connection, batch_id: int, since: float) -> int:
    """Unresolved emails of the batch take verdicts cached at or after `since`."""
    return db.execute(
        "UPDATE batch_emails e SET result = v.result, catch_all = v.catch_all FROM verdicts v"
        " WHERE e.batch_id = %s AND e.result IS NULL AND v.email = e.email"
        " AND v.checked_at >= %s",
        (batch_id, since),
    ).rowcount


def settle_adopted(db: Connection, batch_id: int, now: float, new_batch: Callable[..., int]) -> int:
    """The adopted batch is over: take the verdicts the cache gained since it was adopted;
    whatever has none is planned again in this job (a batch from `new_batch`). Returns how
    many were planned again: the caller moves the batch to done, that much smaller."""
    found = (
        by_name(db)
        .execute("SELECT job_id, updated_at FROM batches WHERE id = %s", (batch_id,))
        .fetchone()
    )
    if found is None:
        raise KeyError(f"no batch {batch_id}")
    take_cached(db, batch_id, found["updated_at"])
    left = unresolved(db, batch_id)
    if left:
        new_id = new_batch(db, found["job_id"], BatchState.PLANNED, len(left), "api", now)
        db.execute(
            "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND result IS NULL",
            (new_id, batch_id),
        )
    return len(left)

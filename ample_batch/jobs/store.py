"""Durable job state in SQLite: jobs, their batches, every verdict, and the result cache.

One database per state dir (`ample-batch.sqlite`, WAL mode) holds every job. A job is its
input's absolute path, content fingerprint and email column, so running the same command again
resumes it. Each batch is a small state machine, one transaction per transition:

    planned -> submitting -> running -> fetching -> done | failed
    waiting -> done          (adopted: emails another job on the key has in flight)

Emails found in the cache at planning time go into a batch born `done` (source `cache`), so a
job's output is simply every verdict in its batches, and a resumed job never re-decides what
was cached. Verdicts are written page by page together with the next page's href, so a run
killed mid-paging resumes at the page it had not yet committed.

The API key is not stored here, not even hashed: a job records the key id (as the ledgers in
schedule.py do) and the base URL, so jobs on one key never buy an email twice (adoption.py).
The transitions around a paid POST commit with synchronous=FULL, and `running` is retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..options import DEFAULT_CACHE_TTL
from .adoption import Claim, adopt, claim_or_adopt, settle_adopted
from .db import BATCH_ATTEMPTS, Batch, BatchState, retried
from .store_outcomes import OutcomeRecords

PLAN_CHUNK = 50_000
"""Emails per planning transaction: other processes on the state dir wait at most one."""


_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


@contextlib.contextmanager
def _then_yield_the_lock() -> Iterator[None]:
    """After a long transaction, pause a quarter of its time: SQLite's waiters poll with
    sleeps of up to 100 ms, so back-to-back transactions would starve other processes."""
    started = time.monotonic()
    yield
    time.sleep(min(0.1, max(0.005, (time.monotonic() - started) / 4)))


def _catch_all(value: bool | None) -> int | None:
    return None if value is None else int(value)


class Store(OutcomeRecords):
    """The state dir's database. Use as a context manager, or call close().

    Built in layers: the connection and jobs (`store_jobs.JobRecords`), what a run reads back
    and the engine's outcomes (`store_outcomes.OutcomeRecords`), and here planning and the
    batch state machine.
    """

    # -- planning ------------------------------------------------------------------------

    def batched_emails(self, job_id: str) -> list[str]:
        """Every email in one of the job's batches, except first-attempt planned ones.

        Those are dissolved and re-cut by `plan()`; everything else is settled or in flight.
        """
        rows = self._bulk(
            "SELECT e.email FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = ? AND NOT (b.state = 'planned' AND b.attempt = 1)",
            (job_id,),
        )
        return [email for (email,) in rows]

    def fresh_verdicts(self, cutoff: float) -> Iterator[tuple[str, str, bool | None]]:
        """Cached verdicts checked at or after `cutoff`."""
        rows = self._bulk(
            "SELECT email, result, catch_all FROM verdicts WHERE checked_at >= ?", (cutoff,)
        )
        for email, result, catch_all in rows:
            yield email, result, None if catch_all is None else bool(catch_all)

    def prune_verdicts(self, run_ttl: float) -> int:
        """Drop cached verdicts no job can use any more; returns how many went.

        Kept: everything younger than the longest TTL in use (this run's, the default, or
        any stored job's), and everything a job not done yet may reuse under its cutoff.
        """
        now = self._clock()
        # The default TTL is kept whatever this run's: one `--cache-ttl 0` run must not empty
        # the cache that every later default run would use.
        ttls = [run_ttl, DEFAULT_CACHE_TTL]
        keep_from = now
        for row in self._db.execute("SELECT created_at, cache_cutoff, state FROM jobs"):
            if row["cache_cutoff"] != float("inf"):
                ttls.append(row["created_at"] - row["cache_cutoff"])
                if row["state"] != "done":
                    keep_from = min(keep_from, row["cache_cutoff"])
        threshold = min(now - max(ttls), keep_from)
        with self._transaction() as db:
            return db.execute("DELETE FROM verdicts WHERE checked_at < ?", (threshold,)).rowcount

    def plan(
        self,
        job_id: str,
        *,
        cached: Sequence[tuple[str, str, bool | None]],
        new: Sequence[str],
        chunk_size: int,
    ) -> None:
        """Re-plan the job, in transactions of about PLAN_CHUNK emails each.

        Unsubmitted batches are dissolved first (their emails come back in `new` from the
        caller's set difference), so a changed --chunk-size applies on resume. Cache hits
        become batches born done. Killed between two transactions, the job re-plans right:
        batches born done count as batched next time, planned ones are dissolved and re-cut.
        """
        now = self._clock()
        with self._transaction() as db:
            self._drop_planned(db, job_id)
        for start in range(0, len(cached), PLAN_CHUNK):
            part = cached[start : start + PLAN_CHUNK]
            with _then_yield_the_lock(), self._transaction() as db:
                batch_id = self._new_batch(db, job_id, BatchState.DONE, len(part), "cache", now)
                db.executemany(
                    "INSERT INTO batch_emails VALUES (?,?,?,?)",
                    ((batch_id, e, r, _catch_all(c)) for e, r, c in part),
                )
        per_transaction = max(1, PLAN_CHUNK // chunk_size) * chunk_size
        for outer in range(0, len(new), per_transaction):
            with _then_yield_the_lock(), self._transaction() as db:
                for start in range(outer, min(len(new), outer + per_transaction), chunk_size):
                    chunk = new[start : min(start + chunk_size, outer + per_transaction)]
                    batch_id = self._new_batch(
                        db, job_id, BatchState.PLANNED, len(chunk), "api", now
                    )
                    db.executemany(
                        "INSERT INTO batch_emails (batch_id, email) VALUES (?,?)",
                        ((batch_id, e) for e in chunk),
                    )

    def _drop_planned(self, db: sqlite3.Connection, job_id: str) -> None:
        # Retry batches (attempt > 1) keep their attempt count, so they are not dissolved.
        where = "job_id = ? AND state = 'planned' AND attempt = 1"
        ids = f"SELECT id FROM batches WHERE {where}"
        db.execute(f"DELETE FROM batch_emails WHERE batch_id IN ({ids})", (job_id,))
        db.execute(f"DELETE FROM batches WHERE {where}", (job_id,))

    def _new_batch(
        self,
        db: sqlite3.Connection,
        job_id: str,
        state: BatchState,
        size: int,
        source: str,
        now: float,
        attempt: int = 1,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO batches (job_id, source, state, attempt, size, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (job_id, source, state, attempt, size, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- batches -------------------------------------------------------------------------

    def batches(self, job_id: str, *states: BatchState) -> list[Batch]:
        query = "SELECT * FROM batches WHERE job_id = ?"
        params: list[Any] = [job_id]
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [self._batch(row) for row in rows]

    def _batch(self, row: sqlite3.Row) -> Batch:
        values = {name: row[name] for name in _BATCH_FIELDS}
        values["state"] = BatchState(values["state"])
        return Batch(**values)

    def batch(self, batch_id: int) -> Batch:
        found = self.find_batch(batch_id)
        if found is None:
            raise KeyError(f"no batch {batch_id}")
        return found

    def find_batch(self, batch_id: int) -> Batch | None:
        row = self._db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else self._batch(row)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = ?"
        if unresolved:
            query += " AND result IS NULL"
        return [email for (email,) in self._bulk(query, (batch_id,))]

    def _move(
        self, batch_id: int, state: BatchState, *, durable: bool = False, **fields: Any
    ) -> None:
        fields["state"] = state
        fields["updated_at"] = self._clock()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction(durable=durable) as db:
            db.execute(
                f"UPDATE batches SET {assignments} WHERE id = ?", [*fields.values(), batch_id]
            )

    def mark_submitting(self, batch_id: int) -> Claim:
        """About to POST: the batch becomes `submitting`, durably.

        Unless a concurrent job bought some of its emails since this one planned (their
        verdicts are cached, or they are in its open batch: see adoption.py). Then the batch
        stays planned and `claim.changed` says so: the caller must not POST the old list.
        Checked in the same transaction as the move, so two processes never both buy one.
        """
        with self._transaction(durable=True) as db:
            adopted = claim_or_adopt(db, batch_id, self._clock())
            if not adopted.changed:
                now = self._clock()
                db.execute(
                    "UPDATE batches SET state = ?, submitted_at = ?, updated_at = ? WHERE id = ?",
                    (BatchState.SUBMITTING, now, now, batch_id),
                )
        return adopted

    def adopt_in_flight(self, job_id: str, candidates: Iterable[str]) -> set[str]:
        """At plan time: candidates in flight in another job on the same key are adopted
        (see adoption.py), not bought again. Returns the adopted emails."""
        with self._transaction() as db:
            return adopt(db, job_id, candidates, self._clock())

    def settle_adopted(self, batch_id: int) -> int:
        """The batch it adopts is over: see `adoption.settle_adopted`."""
        with self._transaction() as db:
            return settle_adopted(db, batch_id, self._clock(), self._new_batch)

    def adopt_overlap(self, batch_id: int) -> Claim:
        """Before waiting for quota: as `mark_submitting`'s check, without the move."""
        with self._transaction() as db:
            return claim_or_adopt(db, batch_id, self._clock())

    def mark_running(self, batch_id: int, *, remote_id: str, remote_href: str) -> None:
        """The POST was accepted: its remote id must reach the disk, whatever it takes.

        Until this commit lands, a kill makes the paid batch's fate unknowable, so a failed
        commit (locked past the busy timeout, disk full) is retried with backoff, durably.
        """
        retried(
            lambda: self._move(
                batch_id,
                BatchState.RUNNING,
                durable=True,
                remote_id=remote_id,
                remote_href=remote_href,
            )
        )

    def note_poll(self, batch_id: int, *, poll_after: float) -> None:
        """Remember when the server allows the next poll, so a restarted run does not poll early."""
        with self._transaction() as db:
            db.execute("UPDATE batches SET poll_after = ? WHERE id = ?", (poll_after, batch_id))

    def mark_fetching(
        self,
        batch_id: int,
        *,
        first_href: str,
        remote_status: str,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Terminal on the server: paging starts. Its `_errors` are kept for a resumed run."""
        self._move(
            batch_id,
            BatchState.FETCHING,
            next_href=first_href,
            remote_status=remote_status,
            error=json.dumps(list(errors)) if errors else None,
        )

    def remote_errors(self, batch_id: int) -> list[dict[str, Any]]:
        """The `_errors` the validation ended with, as saved by `mark_fetching`."""
        saved = self.batch(batch_id).error
        try:
            errors = json.loads(saved) if saved else []
        except ValueError:
            return []
        return errors if isinstance(errors, list) else []

    def split(self, batch_id: int, size: int) -> None:
        """Re-cut a planned batch into batches of at most `size`, keeping its attempt count."""
        batch = self.batch(batch_id)
        emails = self.batch_emails(batch_id, unresolved=True)
        now = self._clock()
        with self._transaction() as db:
            for start in range(size, len(emails), size):
                chunk = emails[start : start + size]
                new_id = self._new_batch(
                    db, batch.job_id, BatchState.PLANNED, len(chunk), "api", now, batch.attempt
                )
                db.executemany(
                    "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND email = ?",
                    ((new_id, batch_id, e) for e in chunk),
                )
            db.execute(
                "UPDATE batches SET size = size - ? WHERE id = ?",
                (max(0, len(emails) - size), batch_id),
            )

    def reject_email(self, batch_id: int, email: str) -> None:
        """The API refused one email of a batch as malformed: it is written `invalid_syntax`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE batch_emails SET result = 'invalid_syntax'"
                " WHERE batch_id = ? AND email = ?",
                (batch_id, email),
            )

    def fail(self, batch_id: int, *, error: str) -> None:
        """Give up on a batch: its emails without a verdict are written `failed`."""
        self._move(batch_id, BatchState.FAILED, next_href=None, error=error)

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[tuple[str, str, bool | None]],
        *,
        next_href: str | None,
    ) -> None:
        """Commit one page of verdicts and where paging continues, atomically."""
        now = self._clock()
        rows = [(r, _catch_all(c), batch_id, e) for e, r, c in verdicts]
        with self._transaction() as db:
            db.executemany(
                "UPDATE batch_emails SET result = ?, catch_all = ?"
                " WHERE batch_id = ? AND email = ?",
                rows,
            )
            db.executemany(
                "INSERT INTO verdicts VALUES (?,?,?,?) ON CONFLICT(email) DO UPDATE SET"
                " result = excluded.result, catch_all = excluded.catch_all,"
                " checked_at = excluded.checked_at",
                ((e, r, c, now) for r, c, _, e in rows),
            )
            db.execute(
                "UPDATE batches SET next_href = ?, updated_at = ? WHERE id = ?",
                (next_href, now, batch_id),
            )

    def finish(self, batch_id: int) -> None:
        """The batch is fully paged: done, or failed if the API left some emails unanswered."""
        unanswered = self.batch_emails(batch_id, unresolved=True)
        if unanswered:
            error = f"the API returned no verdict for {len(unanswered)} email(s)"
            self._move(batch_id, BatchState.FAILED, next_href=None, error=error)
        else:
            self._move(batch_id, BatchState.DONE, next_href=None)

    def back_to_planned(self, batch_id: int, *, error: str | None = None) -> None:
        """The POST was refused (limits, credits): the batch waits for a later submission."""
        self._move(batch_id, BatchState.PLANNED, error=error)

    def retry_unresolved(self, batch_id: int, *, error: str) -> int | None:
        """A batch ended in error: its emails without a verdict go into a new planned batch.

        After BATCH_ATTEMPTS the batch is `failed` instead and its unresolved emails stay in it
        (they are written as `failed`). Returns the new batch id, or None.
        """
        batch = self.batch(batch_id)
        unresolved = self.batch_emails(batch_id, unresolved=True)
        now = self._clock()
        with self._transaction() as db:
            if not unresolved or batch.attempt >= BATCH_ATTEMPTS:
                state = BatchState.FAILED if unresolved else BatchState.DONE
                db.execute(
                    "UPDATE batches SET state = ?, error = ?, next_href = NULL, updated_at = ?"
                    " WHERE id = ?",
                    (state, error, now, batch_id),
                )
                return None
            new_id = self._new_batch(
                db, batch.job_id, BatchState.PLANNED, len(unresolved), "api", now, batch.attempt + 1
            )
            self._move_unresolved(db, batch_id, new_id)
            db.execute(
                "UPDATE batches SET state = ?, error = ?, next_href = NULL, size = size - ?,"
                " updated_at = ? WHERE id = ?",
                (BatchState.DONE, error, len(unresolved), now, batch_id),
            )
            return new_id

    def release_unresolved(self, batch_id: int, *, error: str | None = None) -> int:
        """Canceled, or out of credits: unresolved emails leave the batch, to be planned again.

        Nothing is charged for an email the API never validated, so planning it again later
        cannot pay twice. Returns how many were released.
        """
        now = self._clock()
        with self._transaction() as db:
            released = db.execute(
                "DELETE FROM batch_emails WHERE batch_id = ? AND result IS NULL", (batch_id,)
            ).rowcount
            db.execute(
                "UPDATE batches SET state = ?, error = ?, next_href = NULL, size = size - ?,"
                " updated_at = ? WHERE id = ?",
                (BatchState.DONE, error, released, now, batch_id),
            )
        return released

    def _move_unresolved(self, db: sqlite3.Connection, old: int, new: int) -> None:
        db.execute(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND result IS NULL",
            (new, old),
        )

"""Durable job state in SQLite: jobs, their batches, every verdict, and the result cache.

The SQLite implementation of `protocol.JobStore`. One database per state dir
(`ample-batch.sqlite`, WAL mode) holds every job. A job is its input's absolute path, content
fingerprint and email column, so running the same command again resumes it. Each batch is a
small state machine (`records.MOVES`), one transaction per transition, all through `_move`:

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

import dataclasses
import sqlite3
from collections.abc import Iterable
from typing import Any

from .adoption import adopt, claim_or_adopt, settle_adopted
from .db import retried
from .plan import split_batches
from .records import BATCH_ATTEMPTS, Batch, BatchState, Claim, Verdict
from .store_plan import PlanRecords, catch_all_column
from .store_shared import move_statement

_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


class Store(PlanRecords):
    """The state dir's database. Use as a context manager, or call close().

    Built in layers: the connection and jobs (`store_jobs.JobRecords`), what a run reads back
    and the engine's outcomes (`store_outcomes.OutcomeRecords`), planning and the cache
    (`store_plan.PlanRecords`), and here the batch state machine.
    """

    # -- batches -------------------------------------------------------------------------

    def batches(self, job_id: str, *states: BatchState) -> list[Batch]:
        query = "SELECT * FROM batches WHERE job_id = ?"
        params: list[Any] = [job_id]
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        rows = self._rows(query + " ORDER BY id", params)
        return [self._batch(row) for row in rows]

    def _batch(self, row: sqlite3.Row) -> Batch:
        values = {name: row[name] for name in _BATCH_FIELDS}
        values["state"] = BatchState(values["state"])
        return Batch(**values)

    def find_batch(self, batch_id: int) -> Batch | None:
        row = self._row("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return None if row is None else self._batch(row)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = ?"
        if unresolved:
            query += " AND result IS NULL"
        return [email for (email,) in self._bulk(query, (batch_id,))]

    def _move(
        self,
        batch_id: int,
        state: BatchState,
        *,
        db: sqlite3.Connection | None = None,
        durable: bool = False,
        shrink: int = 0,
        **fields: Any,
    ) -> None:
        """The one transition: move a batch to `state`, setting `fields` and taking `shrink`
        emails off its size. In the caller's transaction `db` when the move goes with other
        writes, else in one of its own. A move that `MOVES` does not allow raises
        StateFailed (a defect), and nothing of the transaction is written."""
        if db is None:
            with self._transaction(durable=durable) as own:
                self._move(batch_id, state, db=own, shrink=shrink, **fields)
            return
        row = db.execute("SELECT state FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        sql, params = move_statement(
            self.path,
            batch_id,
            BatchState(row["state"]),
            state,
            fields,
            shrink=shrink,
            now=self._clock(),
            mark="?",
        )
        db.execute(sql, params)

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
                self._move(batch_id, BatchState.SUBMITTING, db=db, submitted_at=now, updated_at=now)
        return adopted

    def adopt_in_flight(self, job_id: str, candidates: Iterable[str]) -> set[str]:
        """At plan time: candidates in flight in another job on the same key are adopted
        (see adoption.py), not bought again. Returns the adopted emails."""
        with self._transaction() as db:
            return adopt(db, job_id, candidates, self._clock())

    def settle_adopted(self, batch_id: int) -> int:
        """The batch it adopts is over: see `adoption.settle_adopted`."""
        now = self._clock()
        with self._transaction() as db:
            left = settle_adopted(db, batch_id, now, self._new_batch)
            self._move(batch_id, BatchState.DONE, db=db, shrink=left, updated_at=now)
            return left

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

    def split(self, batch_id: int, size: int) -> None:
        """Re-cut a planned batch into batches of at most `size`, keeping its attempt count."""
        batch = self.batch(batch_id)
        emails = self.batch_emails(batch_id, unresolved=True)
        now = self._clock()
        with self._transaction() as db:
            # The first `size` stay in the batch; the rest go into new ones.
            for chunk in split_batches(emails[size:], size):
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

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[Verdict],
        *,
        next_href: str | None,
    ) -> None:
        """Commit one page of verdicts and where paging continues, atomically."""
        now = self._clock()
        rows = [(r, catch_all_column(c), batch_id, e) for e, r, c in verdicts]
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
                self._move(batch_id, state, db=db, error=error, next_href=None, updated_at=now)
                return None
            new_id = self._new_batch(
                db, batch.job_id, BatchState.PLANNED, len(unresolved), "api", now, batch.attempt + 1
            )
            self._move_unresolved(db, batch_id, new_id)
            self._move(
                batch_id,
                BatchState.DONE,
                db=db,
                error=error,
                next_href=None,
                shrink=len(unresolved),
                updated_at=now,
            )
            return new_id

    def release_unresolved(self, batch_id: int, *, error: str | None = None) -> int:
        """Canceled, or out of credits: unresolved emails leave the batch, to be planned again.

        Nothing is charged for an email the API never validated, so planning it again later
        cannot pay twice. Returns how many were released.
        """
        now = self._clock()
        with self._transaction() as db:
            released: int = db.execute(
                "DELETE FROM batch_emails WHERE batch_id = ? AND result IS NULL", (batch_id,)
            ).rowcount
            self._move(
                batch_id,
                BatchState.DONE,
                db=db,
                error=error,
                next_href=None,
                shrink=released,
                updated_at=now,
            )
        return released

    def _move_unresolved(self, db: sqlite3.Connection, old: int, new: int) -> None:
        db.execute(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND result IS NULL",
            (new, old),
        )

"""Durable job state in PostgreSQL: the `protocol.JobStore` that many hosts share.

The twin of store.py, with the same behaviour (tests/jobs run both): one PostgreSQL schema
(`ample_batch` unless named, migrated by `pg.connect`) holds every job of every host, their
batches, every verdict and the result cache. A job is its input's content fingerprint, email
column and sheet (`pg.content_job_id`), so the same file resumes its job wherever it lies.
Each batch is a small state machine (`records.MOVES`), one transaction per transition, all
through `_move`:

    planned -> submitting -> running -> fetching -> done | failed
    waiting -> done          (adopted: emails another job on the key has in flight)

Times are epoch seconds from the store's `clock`, as in SQLite (the ledgers, not here, use the
server's clock). Transactions that other jobs' claims read take one advisory lock per schema
(pg_conn.py), so two hosts never both buy one email; the transitions around a paid POST
commit with `synchronous_commit = on`, and `running` is retried until it lands. A lost
connection is reopened and the interrupted work retried where that is safe (pg_conn.py):
always when it failed before its COMMIT; after a COMMIT whose answer was lost only for the
idempotent writes (`open_job`, `update_job`, `note_poll`, `clear_follow_failures`,
`record_page`, `remember_rejected`, `mark_running`, `back_to_planned` and planning's
transactions). The others (increments, counts, and moves that may not repeat) raise
StateUnavailable then, and the next run resumes from what the database holds.

    with PgStore("postgresql://ana@db.example/leads") as store:
        for job in store.jobs():
            print(job.id, store.progress(job.id).pending)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .db import retried
from .pg_adoption import adopt, claim_or_adopt, settle_adopted, unresolved
from .pg_store_jobs import BATCH_COLUMNS, batch_from_row
from .pg_store_plan import PgPlanRecords
from .plan import split_batches
from .records import BATCH_ATTEMPTS, Batch, BatchState, Claim, Verdict
from .store_shared import move_statement

if TYPE_CHECKING:
    from ..pg import Connection


class PgStore(PgPlanRecords):
    """The shared state database. Use as a context manager, or call close().

    Built in layers like the SQLite store: the connection and jobs
    (`pg_store_jobs.PgJobRecords`), outcomes and reads (`pg_store_outcomes`), planning and
    the cache (`pg_store_plan`), and here the batch state machine.
    """

    _claim_fence: Callable[[Connection], None] | None = None

    def fence_claims(self, fence: Callable[[Connection], None]) -> None:
        """Run `fence` inside every `mark_submitting` transaction, before the move: it raises
        (JobLockLost) when the run no longer holds its job's lock, and nothing is claimed
        (`pg_locks.PgLocks.fence`; wired by `backend.fence_claims`)."""
        self._claim_fence = fence

    # -- batches -------------------------------------------------------------------------

    def batches(self, job_id: str, *states: BatchState) -> list[Batch]:
        query = f"SELECT {BATCH_COLUMNS} FROM batches WHERE job_id = %s"
        params: list[Any] = [job_id]
        if states:
            query += " AND state = ANY(%s)"
            params.append([state.value for state in states])
        return [batch_from_row(row) for row in self._rows(query + " ORDER BY id", params)]

    def find_batch(self, batch_id: int) -> Batch | None:
        row = self._row(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = %s", (batch_id,))
        return None if row is None else batch_from_row(row)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = %s"
        if unresolved:
            query += " AND result IS NULL"
        rows = self._rows(query + ' ORDER BY email COLLATE "C"', (batch_id,))
        return [email for (email,) in rows]

    def _move(
        self,
        batch_id: int,
        state: BatchState,
        *,
        db: Connection | None = None,
        idempotent: bool = False,
        durable: bool = False,
        shrink: int = 0,
        **fields: Any,
    ) -> None:
        """The one transition: move a batch to `state`, setting `fields` and taking `shrink`
        emails off its size. In the caller's transaction `db` when the move goes with other
        writes, else in one of its own. A move that `MOVES` does not allow raises
        StateFailed (a defect), and nothing of the transaction is written."""
        if db is None:
            self._pg.write(
                lambda own: self._move(batch_id, state, db=own, shrink=shrink, **fields),
                idempotent=idempotent,
                durable=durable,
            )
            return
        row = db.execute(
            "SELECT state FROM batches WHERE id = %s FOR UPDATE", (batch_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        sql, params = move_statement(
            self.where,
            batch_id,
            BatchState(row[0]),
            state,
            fields,
            shrink=shrink,
            now=self._clock(),
            mark="%s",
        )
        db.execute(sql, params)

    def mark_submitting(self, batch_id: int) -> Claim:
        """About to POST: the batch becomes `submitting`, durably.

        Unless a concurrent job bought some of its emails since this one planned (their
        verdicts are cached, or they are in its open batch: see adoption.py). Then the batch
        stays planned and `claim.changed` says so: the caller must not POST the old list.
        Checked in the same transaction as the move, under the write lock, so two hosts
        never both buy one email; and, fenced (`fence_claims`), that this run still holds
        its job's lock, so a run that lost it to another host buys nothing more.
        """

        def work(db: Connection) -> Claim:
            if self._claim_fence is not None:
                self._claim_fence(db)
            adopted = claim_or_adopt(db, batch_id, self._clock())
            if not adopted.changed:
                now = self._clock()
                self._move(batch_id, BatchState.SUBMITTING, db=db, submitted_at=now, updated_at=now)
            return adopted

        return self._pg.write(work, durable=True)

    def adopt_in_flight(self, job_id: str, candidates: Iterable[str]) -> set[str]:
        """At plan time: candidates in flight in another job on the same key are adopted
        (see adoption.py), not bought again. Returns the adopted emails."""
        wanted = list(candidates)
        return self._pg.write(lambda db: adopt(db, job_id, wanted, self._clock()))

    def settle_adopted(self, batch_id: int) -> int:
        """The batch it adopts is over: see `pg_adoption.settle_adopted`."""
        now = self._clock()

        def work(db: Connection) -> int:
            left = settle_adopted(db, batch_id, now, self._new_batch)
            self._move(batch_id, BatchState.DONE, db=db, shrink=left, updated_at=now)
            return left

        return self._pg.write(work)

    def adopt_overlap(self, batch_id: int) -> Claim:
        """Before waiting for quota: as `mark_submitting`'s check, without the move."""
        return self._pg.write(lambda db: claim_or_adopt(db, batch_id, self._clock()))

    def mark_running(self, batch_id: int, *, remote_id: str, remote_href: str) -> None:
        """The POST was accepted: its remote id must reach the database, whatever it takes.

        Until this commit lands, a kill makes the paid batch's fate unknowable, so it is
        retried (a lost connection reopened, `running` again is a legal move) with backoff.
        """
        retried(
            lambda: self._move(
                batch_id,
                BatchState.RUNNING,
                idempotent=True,
                durable=True,
                remote_id=remote_id,
                remote_href=remote_href,
            )
        )

    def note_poll(self, batch_id: int, *, poll_after: float) -> None:
        """Remember when the server allows the next poll, so a restarted run does not poll early."""
        self._pg.write(
            lambda db: db.execute(
                "UPDATE batches SET poll_after = %s WHERE id = %s", (poll_after, batch_id)
            ),
            idempotent=True,
            serialised=False,
        )

    def split(self, batch_id: int, size: int) -> None:
        """Re-cut a planned batch into batches of at most `size`, keeping its attempt count."""
        now = self._clock()

        def work(db: Connection) -> None:
            batch = self._locked_batch(db, batch_id)
            emails = unresolved(db, batch_id)
            # The first `size` stay in the batch; the rest go into new ones.
            for chunk in split_batches(emails[size:], size):
                new_id = self._new_batch(
                    db, batch.job_id, BatchState.PLANNED, len(chunk), "api", now, batch.attempt
                )
                db.execute(
                    "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND email = ANY(%s)",
                    (new_id, batch_id, list(chunk)),
                )
            db.execute(
                "UPDATE batches SET size = size - %s WHERE id = %s",
                (max(0, len(emails) - size), batch_id),
            )

        self._pg.write(work)

    def _locked_batch(self, db: Connection, batch_id: int) -> Batch:
        row = db.execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = %s FOR UPDATE", (batch_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        return batch_from_row(row)

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[Verdict],
        *,
        next_href: str | None,
    ) -> None:
        """Commit one page of verdicts and where paging continues, atomically.

        The hot path of a big job (10,000 pages for a million emails): its statements go out
        pipelined: a round trip or two to a distant server instead of six.
        """
        now = self._clock()
        # One row per email (the last wins, as SQLite's one UPDATE per row would leave it):
        # PostgreSQL refuses an upsert that touches one row twice.
        page = {email: (result, catch_all) for email, result, catch_all in verdicts}
        columns = (
            list(page),
            [result for result, _ in page.values()],
            [catch_all for _, catch_all in page.values()],
        )
        rows = "unnest(%s::text[], %s::text[], %s::boolean[]) AS v(email, result, catch_all)"

        def work(db: Connection) -> None:
            db.execute(
                f"UPDATE batch_emails e SET result = v.result, catch_all = v.catch_all FROM {rows}"
                " WHERE e.batch_id = %s AND e.email = v.email",
                (*columns, batch_id),
            )
            db.execute(
                "INSERT INTO verdicts (email, result, catch_all, checked_at)"
                f" SELECT v.email, v.result, v.catch_all, %s FROM {rows}"
                " ON CONFLICT (email) DO UPDATE SET result = excluded.result,"
                " catch_all = excluded.catch_all, checked_at = excluded.checked_at",
                (now, *columns),
            )
            db.execute(
                "UPDATE batches SET next_href = %s, updated_at = %s WHERE id = %s",
                (next_href, now, batch_id),
            )

        self._pg.write(work, idempotent=True, pipelined=True)

    def finish(self, batch_id: int) -> None:
        """The batch is fully paged: done, or failed if the API left some emails unanswered."""

        def work(db: Connection) -> None:
            (unanswered,) = db.execute(
                "SELECT COUNT(*) FROM batch_emails WHERE batch_id = %s AND result IS NULL",
                (batch_id,),
            ).fetchone() or (0,)
            if unanswered:
                error = f"the API returned no verdict for {unanswered} email(s)"
                self._move(batch_id, BatchState.FAILED, db=db, next_href=None, error=error)
            else:
                self._move(batch_id, BatchState.DONE, db=db, next_href=None)

        self._pg.write(work)

    def back_to_planned(self, batch_id: int, *, error: str | None = None) -> None:
        """The POST was refused (limits, credits): the batch waits for a later submission."""
        self._move(batch_id, BatchState.PLANNED, idempotent=True, error=error)

    def retry_unresolved(self, batch_id: int, *, error: str) -> int | None:
        """A batch ended in error: its emails without a verdict go into a new planned batch.

        After BATCH_ATTEMPTS the batch is `failed` instead and its unresolved emails stay in it
        (they are written as `failed`). Returns the new batch id, or None.
        """
        now = self._clock()

        def work(db: Connection) -> int | None:
            batch = self._locked_batch(db, batch_id)
            left = len(unresolved(db, batch_id))
            if not left or batch.attempt >= BATCH_ATTEMPTS:
                state = BatchState.FAILED if left else BatchState.DONE
                self._move(batch_id, state, db=db, error=error, next_href=None, updated_at=now)
                return None
            new_id = self._new_batch(
                db, batch.job_id, BatchState.PLANNED, left, "api", now, batch.attempt + 1
            )
            db.execute(
                "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND result IS NULL",
                (new_id, batch_id),
            )
            self._move(
                batch_id,
                BatchState.DONE,
                db=db,
                error=error,
                next_href=None,
                shrink=left,
                updated_at=now,
            )
            return new_id

        return self._pg.write(work)

    def release_unresolved(self, batch_id: int, *, error: str | None = None) -> int:
        """Canceled, or out of credits: unresolved emails leave the batch, to be planned again.

        Nothing is charged for an email the API never validated, so planning it again later
        cannot pay twice. Returns how many were released.
        """
        now = self._clock()

        def work(db: Connection) -> int:
            released = db.execute(
                "DELETE FROM batch_emails WHERE batch_id = %s AND result IS NULL", (batch_id,)
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

        return self._pg.write(work)

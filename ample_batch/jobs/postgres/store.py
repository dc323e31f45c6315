"""Durable job state in PostgreSQL: the `protocol.JobStore` that many hosts share.

The twin of sqlite/store.py, with the same behaviour (tests/jobs run both): one PostgreSQL schema
(`ample_batch` unless named, migrated by `pg.connect`) holds every job of every host, their
batches, every verdict and the result cache. A job is its input's content fingerprint, email
column and sheet (`pg.content_job_id`), so the same file resumes its job wherever it lies.
Each batch is a small state machine (`records.MOVES`), one transaction per transition, all
through `_move`:

    planned -> submitting -> running -> fetching -> done | failed
    waiting -> done          (adopted: emails another job on the key has in flight)

Times are epoch seconds from the store's `clock`, as in SQLite (the ledgers, not here, use the
server's clock). Transactions that other jobs' claims read take one advisory lock per schema
(conn.py), so two hosts never both buy one email; the transitions around a paid POST
commit with `synchronous_commit = on`, and `running` is retried until it lands. A lost
connection is reopened and the interrupted work retried where that is safe (conn.py):
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

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..records import Batch, BatchState, Claim, Verdict
from ..store_shared import move_statement
from .adoption import adopt, claim_or_adopt, settle_adopted, unresolved
from .store_jobs import BATCH_COLUMNS, batch_from_row
from .store_plan import PgPlanRecords

if TYPE_CHECKING:
    from ...pg import Connection
    from .locks import ClaimFence


class _StaleFence(Exception):
    """Internal: the claim's fence found the run's lock session gone; rolled back, nothing
    claimed, to be recovered outside the transaction."""


class PgStore(PgPlanRecords):
    """The shared state database. Use as a context manager, or call close().

    Built in layers like the SQLite store: the connection and jobs
    (`store_jobs.PgJobRecords`), outcomes and reads (`store_outcomes`), planning and
    the cache (`store_plan`), and here the batch state machine's SQL; the transitions
    made of several statements are `store_shared.SharedStore`'s, the same for both stores.
    """

    _claim_fence: ClaimFence | None = None

    def fence_claims(self, fence: ClaimFence) -> None:
        """Check `fence` inside every `mark_submitting` transaction, before the move
        (`locks.PgLocks.fence`; wired by `backend.fence_claims`): a run that lost its lock
        to another host claims nothing more (JobLockLost). A lock lost with its connection
        and taken by nobody is taken again between two tries of the claim, outside its
        transaction."""
        self._claim_fence = fence

    def _before_claim(self, db: Connection) -> None:
        if self._claim_fence is not None and not self._claim_fence.holds(db):
            raise _StaleFence

    def mark_submitting(self, batch_id: int) -> Claim:
        try:
            return super().mark_submitting(batch_id)
        except _StaleFence:
            fence = self._claim_fence
            assert fence is not None  # only a fence raises it
        fence.recover()  # JobLockLost if the job is another run's now
        try:
            return super().mark_submitting(batch_id)
        except _StaleFence:
            raise fence.locks.lock_lost(fence.job_id) from None

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

    def _locked_batch(self, db: Connection, batch_id: int) -> Batch:
        row = db.execute(
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = %s FOR UPDATE", (batch_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        return batch_from_row(row)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = %s"
        if unresolved:
            query += " AND result IS NULL"
        rows = self._rows(query + ' ORDER BY email COLLATE "C"', (batch_id,))
        return [email for (email,) in rows]

    # -- the batch state machine -----------------------------------------------------------

    def _move(
        self,
        batch_id: int,
        state: BatchState,
        *,
        db: Connection | None = None,
        durable: bool = False,
        idempotent: bool = False,
        shrink: int = 0,
        **fields: Any,
    ) -> None:
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

    def note_poll(self, batch_id: int, *, poll_after: float) -> None:
        self._pg.write(
            lambda db: db.execute(
                "UPDATE batches SET poll_after = %s WHERE id = %s", (poll_after, batch_id)
            ),
            idempotent=True,
            serialised=False,
        )

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[Verdict],
        *,
        next_href: str | None,
    ) -> None:
        """Pipelined: the hot path of a big job (10,000 pages for a million emails), a round
        trip or two to a distant server instead of six."""
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

    # -- the statements SharedStore's transitions are made of --------------------------------

    def _unresolved(self, db: Connection, batch_id: int) -> list[str]:
        return unresolved(db, batch_id)

    def _move_emails(self, db: Connection, source: int, target: int, emails: Sequence[str]) -> None:
        db.execute(
            "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND email = ANY(%s)",
            (target, source, list(emails)),
        )

    def _move_unresolved(self, db: Connection, source: int, target: int) -> None:
        db.execute(
            "UPDATE batch_emails SET batch_id = %s WHERE batch_id = %s AND result IS NULL",
            (target, source),
        )

    def _shrink(self, db: Connection, batch_id: int, emails: int) -> None:
        db.execute("UPDATE batches SET size = size - %s WHERE id = %s", (emails, batch_id))

    def _claim(self, db: Connection, batch_id: int, now: float) -> Claim:
        return claim_or_adopt(db, batch_id, now)

    def _adopt(
        self, db: Connection, job_id: str, candidates: Iterable[str], now: float
    ) -> set[str]:
        return adopt(db, job_id, candidates, now)

    def _settle_adopted(self, db: Connection, batch_id: int, now: float) -> int:
        return settle_adopted(db, batch_id, now, self._new_batch)

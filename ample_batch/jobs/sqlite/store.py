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
from collections.abc import Iterable, Sequence
from typing import Any

from ..records import Batch, BatchState, Claim, Verdict
from ..store_shared import move_statement
from .adoption import adopt, claim_or_adopt, settle_adopted, unresolved
from .store_plan import PlanRecords, catch_all_column

_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


class Store(PlanRecords):
    """The state dir's database. Use as a context manager, or call close().

    Built in layers: the connection and jobs (`store_jobs.JobRecords`), what a run reads back
    and the engine's outcomes (`store_outcomes.OutcomeRecords`), planning and the cache
    (`store_plan.PlanRecords`), and here the batch state machine's SQL; the transitions made
    of several statements are `store_shared.SharedStore`'s, the same for both stores.
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

    def _locked_batch(self, db: sqlite3.Connection, batch_id: int) -> Batch:
        # A plain read: `BEGIN IMMEDIATE` holds the write lock for the whole transaction.
        row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise KeyError(f"no batch {batch_id}")
        return self._batch(row)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = ?"
        if unresolved:
            query += " AND result IS NULL"
        return [email for (email,) in self._bulk(query, (batch_id,))]

    # -- the batch state machine -----------------------------------------------------------

    def _move(
        self,
        batch_id: int,
        state: BatchState,
        *,
        db: sqlite3.Connection | None = None,
        durable: bool = False,
        idempotent: bool = False,
        shrink: int = 0,
        **fields: Any,
    ) -> None:
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

    def note_poll(self, batch_id: int, *, poll_after: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE batches SET poll_after = ? WHERE id = ?", (poll_after, batch_id))

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[Verdict],
        *,
        next_href: str | None,
    ) -> None:
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

    # -- the statements SharedStore's transitions are made of --------------------------------

    def _unresolved(self, db: sqlite3.Connection, batch_id: int) -> list[str]:
        return unresolved(db, batch_id)

    def _move_emails(
        self, db: sqlite3.Connection, source: int, target: int, emails: Sequence[str]
    ) -> None:
        db.executemany(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND email = ?",
            ((target, source, e) for e in emails),
        )

    def _move_unresolved(self, db: sqlite3.Connection, source: int, target: int) -> None:
        db.execute(
            "UPDATE batch_emails SET batch_id = ? WHERE batch_id = ? AND result IS NULL",
            (target, source),
        )

    def _shrink(self, db: sqlite3.Connection, batch_id: int, emails: int) -> None:
        db.execute("UPDATE batches SET size = size - ? WHERE id = ?", (emails, batch_id))

    def _claim(self, db: sqlite3.Connection, batch_id: int, now: float) -> Claim:
        return claim_or_adopt(db, batch_id, now)

    def _adopt(
        self, db: sqlite3.Connection, job_id: str, candidates: Iterable[str], now: float
    ) -> set[str]:
        return adopt(db, job_id, candidates, now)

    def _settle_adopted(self, db: sqlite3.Connection, batch_id: int, now: float) -> int:
        return settle_adopted(db, batch_id, now, self._new_batch)

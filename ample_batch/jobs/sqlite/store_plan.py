"""Planning in the SQLite job store: a job's batches cut from its emails, cache hits as
batches born done, and the cache's freshness lookups and pruning. A layer of `store.Store`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from ..records import BatchState, Verdict
from ..store_shared import prune_threshold
from .store_outcomes import OutcomeRecords


@contextlib.contextmanager
def _then_yield_the_lock() -> Iterator[None]:
    """After a long transaction, pause a quarter of its time (within bounds): SQLite's
    waiters poll with growing sleeps, so back-to-back transactions would starve them."""
    started = time.monotonic()
    yield
    time.sleep(min(0.1, max(0.005, (time.monotonic() - started) / 4)))


def catch_all_column(value: bool | None) -> int | None:
    return None if value is None else int(value)


class PlanRecords(OutcomeRecords):
    """Planning and the verdict cache, on top of the jobs and outcomes."""

    def batched_emails(self, job_id: str) -> list[str]:
        rows = self._bulk(
            "SELECT e.email FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = ? AND NOT (b.state = 'planned' AND b.attempt = 1)",
            (job_id,),
        )
        return [email for (email,) in rows]

    def fresh_verdicts(self, cutoff: float) -> Iterator[Verdict]:
        rows = self._bulk(
            "SELECT email, result, catch_all FROM verdicts WHERE checked_at >= ?", (cutoff,)
        )
        for email, result, catch_all in rows:
            yield email, result, None if catch_all is None else bool(catch_all)

    def prune_verdicts(self, run_ttl: float) -> int:
        threshold = prune_threshold(self._clock(), run_ttl, self.jobs())
        with self._transaction() as db:
            return db.execute("DELETE FROM verdicts WHERE checked_at < ?", (threshold,)).rowcount

    def release_stale(self, job_id: str, emails: Iterable[str], *, checked_before: float) -> int:
        """The emails through a temporary table, however many they are."""
        with self._transaction() as db:
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS stale_emails (email TEXT PRIMARY KEY)"
                " WITHOUT ROWID"
            )
            db.execute("DELETE FROM stale_emails")
            db.executemany("INSERT OR IGNORE INTO stale_emails VALUES (?)", ((e,) for e in emails))
            held = (
                "batch_id IN (SELECT id FROM batches WHERE job_id = ?"
                " AND state IN ('done', 'failed')) AND email IN (SELECT email FROM stale_emails)"
            )
            shrinks = db.execute(
                f"SELECT batch_id, COUNT(*) AS emails FROM batch_emails WHERE {held}"
                " GROUP BY batch_id",
                (job_id,),
            ).fetchall()
            db.executemany(
                "UPDATE batches SET size = size - ? WHERE id = ?",
                ((row["emails"], row["batch_id"]) for row in shrinks),
            )
            released: int = db.execute(f"DELETE FROM batch_emails WHERE {held}", (job_id,)).rowcount
            db.execute(
                "DELETE FROM verdicts WHERE checked_at < ?"
                " AND email IN (SELECT email FROM stale_emails)",
                (checked_before,),
            )
            db.execute("DELETE FROM stale_emails")
        return released

    def _write_planning(self, work: Callable[[sqlite3.Connection], None]) -> None:
        with _then_yield_the_lock(), self._transaction() as db:
            work(db)

    def _insert_cached(
        self, db: sqlite3.Connection, job_id: str, part: Sequence[Verdict], now: float
    ) -> None:
        batch_id = self._new_batch(db, job_id, BatchState.DONE, len(part), "cache", now)
        db.executemany(
            "INSERT INTO batch_emails VALUES (?,?,?,?)",
            ((batch_id, e, r, catch_all_column(c)) for e, r, c in part),
        )

    def _insert_planned(
        self, db: sqlite3.Connection, job_id: str, chunks: Sequence[Sequence[str]], now: float
    ) -> None:
        for chunk in chunks:
            batch_id = self._new_batch(db, job_id, BatchState.PLANNED, len(chunk), "api", now)
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

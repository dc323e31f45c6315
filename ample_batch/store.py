"""Durable job state in SQLite: jobs, their batches, every verdict, and the result cache.

One database per state dir (`ample-batch.sqlite`, WAL mode) holds every job. A job is its
input's absolute path, content fingerprint and email column, so running the same command again
resumes it. Each batch is a small state machine, one transaction per transition:

    planned -> submitting -> running -> fetching -> done | failed

Emails found in the cache at planning time go into a batch born `done` (source `cache`), so a
job's output is simply every verdict in its batches, and a resumed job never re-decides what
was cached. Verdicts are written page by page together with the next page's href, so a run
killed mid-paging resumes at the page it had not yet committed.

The API key is not stored here, not even hashed: the ledgers (schedule.py) carry the key id.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .schema import (
    BATCH_ATTEMPTS,
    DB_NAME,
    Batch,
    BatchState,
    Job,
    Progress,
    connect,
    job_id_for,
    schema_version,
    transaction,
)


def _catch_all(value: bool | None) -> int | None:
    return None if value is None else int(value)


class Store:
    """The state dir's database. Use as a context manager, or call close()."""

    def __init__(self, state_dir: Path, *, clock: Any = time.time) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        self._clock = clock
        self._db = connect(self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self._db)

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    # -- jobs ----------------------------------------------------------------------------

    def open_job(
        self,
        *,
        input_path: str,
        fingerprint: str,
        email_column: str,
        output_path: str | None,
        cache_ttl: float,
    ) -> Job:
        """The job for this input, created on first sight. The cache cutoff is fixed then."""
        job_id = job_id_for(input_path, fingerprint, email_column)
        now = self._clock()
        cutoff = now - cache_ttl if cache_ttl > 0 else float("inf")
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, input_path, fingerprint, email_column,"
                " output_path, created_at, updated_at, cache_cutoff) VALUES (?,?,?,?,?,?,?,?)",
                (job_id, input_path, fingerprint, email_column, output_path, now, now, cutoff),
            )
            db.execute(
                "UPDATE jobs SET output_path = ?, updated_at = ? WHERE id = ?",
                (output_path, now, job_id),
            )
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> Job | None:
        """A job by id or by a unique id prefix."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE id LIKE ? || '%' ORDER BY id", (job_id,)
        ).fetchall()
        return self._job(rows[0]) if len(rows) == 1 else None

    def jobs(self) -> list[Job]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY updated_at DESC").fetchall()
        return [self._job(row) for row in rows]

    def _job(self, row: Sequence[Any]) -> Job:
        values = list(row)
        values[9] = json.loads(values[9])
        return Job(*values)

    def note_possible_double_charges(self, job_id: str, emails: int) -> None:
        """Add to the job's count of emails that a resent POST may have charged twice."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET possible_double_charges = possible_double_charges + ?"
                " WHERE id = ?",
                (emails, job_id),
            )

    def update_job(self, job_id: str, *, state: str, stats: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, stats = ?, updated_at = ? WHERE id = ?",
                (state, json.dumps(stats, sort_keys=True), self._clock(), job_id),
            )

    # -- planning ------------------------------------------------------------------------

    def batched_emails(self, job_id: str) -> list[str]:
        """Every email in one of the job's batches, except first-attempt planned ones.

        Those are dissolved and re-cut by `plan()`; everything else is settled or in flight.
        """
        rows = self._db.execute(
            "SELECT e.email FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = ? AND NOT (b.state = 'planned' AND b.attempt = 1)",
            (job_id,),
        )
        return [row[0] for row in rows]

    def fresh_verdicts(self, cutoff: float) -> Iterator[tuple[str, str, bool | None]]:
        """Cached verdicts checked at or after `cutoff`."""
        rows = self._db.execute(
            "SELECT email, result, catch_all FROM verdicts WHERE checked_at >= ?", (cutoff,)
        )
        for email, result, catch_all in rows:
            yield email, result, None if catch_all is None else bool(catch_all)

    def plan(
        self,
        job_id: str,
        *,
        cached: Sequence[tuple[str, str, bool | None]],
        new: Sequence[str],
        chunk_size: int,
    ) -> None:
        """Re-plan the job in one transaction.

        Unsubmitted batches are dissolved first (their emails come back in `new` from the
        caller's set difference), so a changed --chunk-size applies on resume. Cache hits
        become one batch born done.
        """
        now = self._clock()
        with self._transaction() as db:
            self._drop_planned(db, job_id)
            if cached:
                batch_id = self._new_batch(db, job_id, BatchState.DONE, len(cached), "cache", now)
                db.executemany(
                    "INSERT INTO batch_emails VALUES (?,?,?,?)",
                    ((batch_id, e, r, _catch_all(c)) for e, r, c in cached),
                )
            for start in range(0, len(new), chunk_size):
                chunk = new[start : start + chunk_size]
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

    # -- batches -------------------------------------------------------------------------

    def batches(self, job_id: str, *states: BatchState) -> list[Batch]:
        query = "SELECT * FROM batches WHERE job_id = ?"
        params: list[Any] = [job_id]
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [
            Batch(
                id=r[0],
                job_id=r[1],
                source=r[2],
                state=BatchState(r[3]),
                attempt=r[4],
                size=r[5],
                remote_id=r[6],
                remote_href=r[7],
                next_href=r[8],
                remote_status=r[9],
                poll_after=r[10],
                submitted_at=r[11],
                error=r[13],
            )
            for r in rows
        ]

    def batch(self, batch_id: int) -> Batch:
        job_id = self._db.execute("SELECT job_id FROM batches WHERE id = ?", (batch_id,))
        (job,) = job_id.fetchone()
        return next(b for b in self.batches(job) if b.id == batch_id)

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        query = "SELECT email FROM batch_emails WHERE batch_id = ?"
        if unresolved:
            query += " AND result IS NULL"
        return [row[0] for row in self._db.execute(query, (batch_id,))]

    def _move(self, batch_id: int, state: BatchState, **fields: Any) -> None:
        fields["state"] = state
        fields["updated_at"] = self._clock()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as db:
            db.execute(
                f"UPDATE batches SET {assignments} WHERE id = ?", [*fields.values(), batch_id]
            )

    def mark_submitting(self, batch_id: int) -> None:
        self._move(batch_id, BatchState.SUBMITTING, submitted_at=self._clock())

    def mark_running(self, batch_id: int, *, remote_id: str, remote_href: str) -> None:
        self._move(batch_id, BatchState.RUNNING, remote_id=remote_id, remote_href=remote_href)

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

    # -- reading results back ------------------------------------------------------------

    def job_verdicts(self, job_id: str) -> Iterator[tuple[str, str, bool | None]]:
        """Every verdict of the job; unresolved emails of failed batches come back `failed`."""
        rows = self._db.execute(
            "SELECT e.email, COALESCE(e.result, CASE b.state WHEN 'failed' THEN 'failed' END),"
            " e.catch_all FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = ? AND (e.result IS NOT NULL OR b.state = 'failed')",
            (job_id,),
        )
        for email, result, catch_all in rows:
            yield email, result, None if catch_all is None else bool(catch_all)

    def progress(self, job_id: str) -> Progress:
        emails, resolved, cached, failed = self._db.execute(
            "SELECT COUNT(*), COUNT(e.result), SUM(b.source = 'cache'),"
            " SUM(e.result IS NULL AND b.state = 'failed')"
            " FROM batch_emails e JOIN batches b ON b.id = e.batch_id WHERE b.job_id = ?",
            (job_id,),
        ).fetchone()
        counts = dict(
            self._db.execute(
                "SELECT state, COUNT(*) FROM batches WHERE job_id = ? AND source = 'api'"
                " GROUP BY state",
                (job_id,),
            ).fetchall()
        )
        return Progress(emails, resolved, cached or 0, failed or 0, counts)

    # -- engine outcomes (H3) --------------------------------------------------------------

    def note_follow_failure(self, batch_id: int, now: float) -> tuple[int, float]:
        """One more failed poll or page of a batch: returns the failures in a row and when
        the first of them happened (kept across runs)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE batches SET follow_failures = follow_failures + 1,"
                " first_failure_at = COALESCE(first_failure_at, ?) WHERE id = ?",
                (now, batch_id),
            )
            count, first = db.execute(
                "SELECT follow_failures, first_failure_at FROM batches WHERE id = ?", (batch_id,)
            ).fetchone()
        return int(count), float(first)

    def follow_failures(self, batch_id: int) -> int:
        """Failed polls or pages in a row, over every run, of a batch (0 after a success)."""
        row = self._db.execute(
            "SELECT follow_failures FROM batches WHERE id = ?", (batch_id,)
        ).fetchone()
        return int(row[0]) if row else 0

    def clear_follow_failures(self, batch_id: int) -> None:
        """A poll or page of the batch succeeded: its count of failures starts again."""
        with self._transaction() as db:
            db.execute(
                "UPDATE batches SET follow_failures = 0, first_failure_at = NULL WHERE id = ?",
                (batch_id,),
            )

    def batch_verdicts(self, batch_id: int) -> list[tuple[str, str, bool | None]]:
        """The verdicts already recorded for a batch (by earlier pages, maybe earlier runs)."""
        rows = self._db.execute(
            "SELECT email, result, catch_all FROM batch_emails"
            " WHERE batch_id = ? AND result IS NOT NULL",
            (batch_id,),
        )
        return [(e, r, None if c is None else bool(c)) for e, r, c in rows]

    def remember_rejected(self, batch_id: int, emails: Sequence[str], *, error: str) -> None:
        """The API refused these emails of a batch as malformed: each is written
        `invalid_syntax`, and remembered so that no later run sends it again."""
        now = self._clock()
        with self._transaction() as db:
            db.executemany(
                "UPDATE batch_emails SET result = 'invalid_syntax'"
                " WHERE batch_id = ? AND email = ?",
                ((batch_id, e) for e in emails),
            )
            db.executemany(
                "INSERT INTO rejected_emails VALUES (?,?,?) ON CONFLICT(email) DO NOTHING",
                ((e, error, now) for e in emails),
            )

    def apply_known_rejections(self, batch_id: int) -> int:
        """Write `invalid_syntax` for the batch's emails the API refused before; returns how
        many there were."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE batch_emails SET result = 'invalid_syntax' WHERE batch_id = ?"
                " AND result IS NULL AND email IN (SELECT email FROM rejected_emails)",
                (batch_id,),
            ).rowcount

    def batch_email_states(self, batch_id: int, emails: Iterable[str]) -> dict[str, bool]:
        """Those of `emails` the batch holds, each with whether it has a verdict yet: a page's
        matching looks its emails up here instead of holding the whole batch in memory."""
        wanted = list(emails)
        found: dict[str, bool] = {}
        for start in range(0, len(wanted), 500):  # under any SQLite's limit on parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT email, result IS NOT NULL FROM batch_emails"
                f" WHERE batch_id = ? AND email IN ({marks})",
                (batch_id, *chunk),
            )
            found.update((e, bool(answered)) for e, answered in rows)
        return found

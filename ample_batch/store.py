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
schedule.py do) and the base URL, so jobs on one key never buy an email twice (inflight.py).
The transitions around a paid POST commit with synchronous=FULL, and `running` is retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .state_dir import make_state_dir, refuse_reset_state

if TYPE_CHECKING:
    from .inflight import Claim
from .schema import (
    BATCH_ATTEMPTS,
    DB_NAME,
    Batch,
    BatchState,
    Job,
    Progress,
    connect,
    job_id_for,
    retried,
    schema_version,
    transaction,
)

DEFAULT_CACHE_TTL = 30 * 86400.0
"""`--cache-ttl`'s default: cached verdicts are kept at least this long."""
PLAN_CHUNK = 50_000
"""Emails per planning transaction: other processes on the state dir wait at most one."""
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
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


class Store:
    """The state dir's database. Use as a context manager, or call close()."""

    def __init__(self, state_dir: Path, *, clock: Any = time.time, timeout: float = 30.0) -> None:
        make_state_dir(state_dir)
        # Before the migrations turn an empty file into a valid empty database: `status` or
        # `estimate` looking at a truncated one must not make the next run buy everything.
        refuse_reset_state(state_dir)
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self._clock = clock
        self._db = connect(self.path, timeout=timeout)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self._db)

    def _transaction(
        self, *, durable: bool = False
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self.path, durable=durable)

    def _bulk(self, query: str, params: Sequence[Any]) -> sqlite3.Cursor:
        """Rows as plain tuples, for reads of millions of rows: the `sqlite3.Row` that every
        other read gets (columns by name) is one more object per row there."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        return cursor.execute(query, params)

    # -- jobs ----------------------------------------------------------------------------

    def open_job(
        self,
        *,
        input_path: str,
        fingerprint: str,
        email_column: str,
        output_path: str | None,
        cache_ttl: float,
        key_id: str | None = None,
        base_url: str | None = None,
    ) -> Job:
        """The job for this input, created on first sight. The cache cutoff is fixed then.

        Call it holding the job's lock (locks.job_lock): it records this run's output path
        and API identity (key id and base URL, never the key), which a busy job must keep.
        """
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
                "UPDATE jobs SET output_path = ?, updated_at = ?, key_id = COALESCE(?, key_id),"
                " base_url = COALESCE(?, base_url) WHERE id = ?",
                (output_path, now, key_id, base_url, job_id),
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

    def _job(self, row: sqlite3.Row) -> Job:
        values = {name: row[name] for name in _JOB_FIELDS}
        values["stats"] = json.loads(values["stats"])
        return Job(**values)

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
        verdicts are cached, or they are in its open batch: see inflight.py). Then the batch
        stays planned and `claim.changed` says so: the caller must not POST the old list.
        Checked in the same transaction as the move, so two processes never both buy one.
        """
        from .inflight import claim_or_adopt

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
        (see inflight.py), not bought again. Returns the adopted emails."""
        from .inflight import adopt

        with self._transaction() as db:
            return adopt(db, job_id, candidates, self._clock())

    def adopt_overlap(self, batch_id: int) -> Claim:
        """Before waiting for quota: as `mark_submitting`'s check, without the move."""
        from .inflight import claim_or_adopt

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

    # -- reading results back ------------------------------------------------------------

    def job_verdicts(self, job_id: str) -> Iterator[tuple[str, str, bool | None]]:
        """Every verdict of the job; unresolved emails of failed batches come back `failed`."""
        rows = self._bulk(
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

    # -- engine outcomes: follow failures, recorded verdicts, emails the API refused ----

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

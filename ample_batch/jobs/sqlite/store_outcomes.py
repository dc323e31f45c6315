"""What the engine records besides transitions, and what a run reads back: every verdict of
a job, its progress, failures counted on a batch across runs, and emails the API refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..plan import split_batches
from ..records import Progress, Verdict
from .store_jobs import JobRecords

LOOKUP_CHUNK = 500
"""Emails per `IN (...)` lookup: under any SQLite's limit on parameters."""


class OutcomeRecords(JobRecords):
    """Verdicts and outcomes of a job's batches: the part of `store.Store` the engine reads."""

    # -- reading results back ------------------------------------------------------------

    def job_verdicts(self, job_id: str) -> Iterator[Verdict]:
        rows = self._bulk(
            "SELECT e.email, COALESCE(e.result, CASE b.state WHEN 'failed' THEN 'failed' END),"
            " e.catch_all FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = ? AND (e.result IS NOT NULL OR b.state = 'failed')",
            (job_id,),
        )
        for email, result, catch_all in rows:
            yield email, result, None if catch_all is None else bool(catch_all)

    def progress(self, job_id: str) -> Progress:
        totals = self._row(
            "SELECT COUNT(*) AS emails, COUNT(e.result) AS resolved,"
            " SUM(b.source = 'cache') AS cached,"
            " SUM(e.result IS NULL AND b.state = 'failed') AS failed"
            " FROM batch_emails e JOIN batches b ON b.id = e.batch_id WHERE b.job_id = ?",
            (job_id,),
        )
        assert totals is not None  # an aggregate always gives one row
        rows = self._rows(
            "SELECT state, COUNT(*) AS batches FROM batches WHERE job_id = ? AND source = 'api'"
            " GROUP BY state",
            (job_id,),
        )
        # SUM of no rows is NULL, where COUNT is 0.
        return Progress(
            emails=totals["emails"],
            resolved=totals["resolved"],
            cached=totals["cached"] or 0,
            failed=totals["failed"] or 0,
            batches={row["state"]: row["batches"] for row in rows},
        )

    # -- engine outcomes: follow failures, recorded verdicts, emails the API refused ----

    def note_follow_failure(self, batch_id: int, now: float) -> tuple[int, float]:
        with self._transaction() as db:
            db.execute(
                "UPDATE batches SET follow_failures = follow_failures + 1,"
                " first_failure_at = COALESCE(first_failure_at, ?) WHERE id = ?",
                (now, batch_id),
            )
            row = db.execute(
                "SELECT follow_failures, first_failure_at FROM batches WHERE id = ?", (batch_id,)
            ).fetchone()
        return int(row["follow_failures"]), float(row["first_failure_at"])

    def follow_failures(self, batch_id: int) -> int:
        row = self._row("SELECT follow_failures FROM batches WHERE id = ?", (batch_id,))
        return int(row[0]) if row else 0

    def clear_follow_failures(self, batch_id: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE batches SET follow_failures = 0, first_failure_at = NULL WHERE id = ?",
                (batch_id,),
            )

    def batch_verdicts(self, batch_id: int) -> list[Verdict]:
        rows = self._rows(
            "SELECT email, result, catch_all FROM batch_emails"
            " WHERE batch_id = ? AND result IS NOT NULL",
            (batch_id,),
        )
        return [(e, r, None if c is None else bool(c)) for e, r, c in rows]

    def remember_rejected(self, batch_id: int, emails: Sequence[str], *, error: str) -> None:
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
        with self._transaction() as db:
            return db.execute(
                "UPDATE batch_emails SET result = 'invalid_syntax' WHERE batch_id = ?"
                " AND result IS NULL AND email IN (SELECT email FROM rejected_emails)",
                (batch_id,),
            ).rowcount

    def batch_email_states(self, batch_id: int, emails: Iterable[str]) -> dict[str, bool]:
        """Looked up LOOKUP_CHUNK emails a query."""
        found: dict[str, bool] = {}
        for chunk in split_batches(list(emails), LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                "SELECT email, result IS NOT NULL AS answered FROM batch_emails"
                f" WHERE batch_id = ? AND email IN ({marks})",
                (batch_id, *chunk),
            )
            found.update((row["email"], bool(row["answered"])) for row in rows)
        return found

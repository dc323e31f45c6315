"""What the engine records besides transitions, and what a run reads back, in PostgreSQL: every
verdict of a job (streamed), its progress, failures counted on a batch across runs, and emails
the API refused. A layer of `store.PgStore`, the twin of sqlite/store_outcomes.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

from ..plan import split_batches
from ..records import Progress, Verdict
from .conn import by_name
from .store_jobs import PgJobRecords

if TYPE_CHECKING:
    from ...pg import Connection

LOOKUP_CHUNK = 10_000
"""Emails per `= ANY(array)` lookup: one round trip each, arrays of bounded size."""


class PgOutcomeRecords(PgJobRecords):
    """Verdicts and outcomes of a job's batches: the part of the store the engine reads."""

    # -- reading results back ------------------------------------------------------------

    def job_verdicts(self, job_id: str) -> Iterator[Verdict]:
        """From a server-side cursor, 10,000 rows a round trip, straight into `Verdicts.from_rows`
        (COPY into Arrow was measured slower: docs/design-measurements.md, "State").

            verdicts = dict((email, result) for email, result, _ in store.job_verdicts(job.id))
        """
        rows = self._pg.stream(
            "SELECT e.email, COALESCE(e.result, CASE b.state WHEN 'failed' THEN 'failed' END),"
            " e.catch_all FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = %s AND (e.result IS NOT NULL OR b.state = 'failed')",
            (job_id,),
        )
        # The rows are (text, text, boolean | None) already: no per-row conversion.
        return cast("Iterator[Verdict]", rows)

    def progress(self, job_id: str) -> Progress:
        totals = self._named_row(
            "SELECT COUNT(*) AS emails, COUNT(e.result) AS resolved,"
            " COUNT(*) FILTER (WHERE b.source = 'cache') AS cached,"
            " COUNT(*) FILTER (WHERE e.result IS NULL AND b.state = 'failed') AS failed"
            " FROM batch_emails e JOIN batches b ON b.id = e.batch_id WHERE b.job_id = %s",
            (job_id,),
        )
        assert totals is not None  # an aggregate always gives one row
        rows = self._named_rows(
            "SELECT state, COUNT(*) AS batches FROM batches WHERE job_id = %s AND source = 'api'"
            " GROUP BY state",
            (job_id,),
        )
        return Progress(
            emails=int(totals["emails"]),
            resolved=int(totals["resolved"]),
            cached=int(totals["cached"]),
            failed=int(totals["failed"]),
            batches={row["state"]: int(row["batches"]) for row in rows},
        )

    # -- engine outcomes: follow failures, recorded verdicts, emails the API refused ----

    def note_follow_failure(self, batch_id: int, now: float) -> tuple[int, float]:
        """One statement (`RETURNING`), without the write lock: no claim reads the counts."""

        def work(db: Connection) -> tuple[int, float]:
            row = (
                by_name(db)
                .execute(
                    "UPDATE batches SET follow_failures = follow_failures + 1,"
                    " first_failure_at = COALESCE(first_failure_at, %s) WHERE id = %s"
                    " RETURNING follow_failures, first_failure_at",
                    (now, batch_id),
                )
                .fetchone()
            )
            if row is None:
                raise KeyError(f"no batch {batch_id}")
            return int(row["follow_failures"]), float(row["first_failure_at"])

        return self._pg.write(work, serialised=False)

    def follow_failures(self, batch_id: int) -> int:
        row = self._row("SELECT follow_failures FROM batches WHERE id = %s", (batch_id,))
        return int(row[0]) if row else 0

    def clear_follow_failures(self, batch_id: int) -> None:
        self._pg.write(
            lambda db: db.execute(
                "UPDATE batches SET follow_failures = 0, first_failure_at = NULL WHERE id = %s",
                (batch_id,),
            ),
            idempotent=True,
            serialised=False,
        )

    def batch_verdicts(self, batch_id: int) -> list[Verdict]:
        rows = self._rows(
            "SELECT email, result, catch_all FROM batch_emails"
            ' WHERE batch_id = %s AND result IS NOT NULL ORDER BY email COLLATE "C"',
            (batch_id,),
        )
        return [(e, r, c) for e, r, c in rows]

    def remember_rejected(self, batch_id: int, emails: Sequence[str], *, error: str) -> None:
        now = self._clock()
        wanted = list(emails)

        def work(db: Connection) -> None:
            db.execute(
                "UPDATE batch_emails SET result = 'invalid_syntax'"
                " WHERE batch_id = %s AND email = ANY(%s)",
                (batch_id, wanted),
            )
            db.execute(
                "INSERT INTO rejected_emails (email, error, rejected_at)"
                " SELECT DISTINCT e, %s, %s::double precision FROM unnest(%s::text[]) AS e"
                " ON CONFLICT (email) DO NOTHING",
                (error, now, wanted),
            )

        self._pg.write(work, idempotent=True)

    def apply_known_rejections(self, batch_id: int) -> int:
        return self._pg.write(
            lambda db: (
                db.execute(
                    "UPDATE batch_emails SET result = 'invalid_syntax' WHERE batch_id = %s"
                    " AND result IS NULL AND email IN (SELECT email FROM rejected_emails)",
                    (batch_id,),
                ).rowcount
            )
        )

    def batch_email_states(self, batch_id: int, emails: Iterable[str]) -> dict[str, bool]:
        """Looked up LOOKUP_CHUNK emails a round trip."""
        found: dict[str, bool] = {}
        for chunk in split_batches(list(emails), LOOKUP_CHUNK):
            rows = self._named_rows(
                "SELECT email, result IS NOT NULL AS answered FROM batch_emails"
                " WHERE batch_id = %s AND email = ANY(%s)",
                (batch_id, list(chunk)),
            )
            found.update((row["email"], bool(row["answered"])) for row in rows)
        return found

"""Planning in the PostgreSQL job store: a job's batches cut from its emails and written with
COPY, cache hits as batches born done, and the cache's freshness lookups and pruning. A layer
of `store.PgStore`, the twin of sqlite/store_plan.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

from ..records import BatchState, Verdict
from ..store_shared import prune_threshold
from .store_outcomes import PgOutcomeRecords

if TYPE_CHECKING:
    from ...pg import Connection


class PgPlanRecords(PgOutcomeRecords):
    """Planning and the verdict cache, on top of the jobs and outcomes."""

    def batched_emails(self, job_id: str) -> list[str]:
        """Streamed from a server-side cursor."""
        rows = self._pg.stream(
            "SELECT e.email FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
            " WHERE b.job_id = %s AND NOT (b.state = 'planned' AND b.attempt = 1)",
            (job_id,),
        )
        return [email for (email,) in rows]

    def fresh_verdicts(self, cutoff: float) -> Iterator[Verdict]:
        """Cached verdicts checked at or after `cutoff`, streamed from a server-side cursor.

        fresh = {email for email, _result, _catch_all in store.fresh_verdicts(cutoff)}
        """
        rows = self._pg.stream(
            "SELECT email, result, catch_all FROM verdicts WHERE checked_at >= %s", (cutoff,)
        )
        # The rows are (text, text, boolean | None) already: no per-row conversion.
        return cast("Iterator[Verdict]", rows)

    def release_stale(self, job_id: str, emails: Iterable[str], *, checked_before: float) -> int:
        """Serialised, since claims read both batches and the cache; idempotent: run twice,
        it is run once."""
        wanted = list(dict.fromkeys(emails))

        def work(db: Connection) -> int:
            row = db.execute(
                "WITH gone AS ("
                " DELETE FROM batch_emails e USING batches b"
                " WHERE b.id = e.batch_id AND b.job_id = %s AND b.state IN ('done', 'failed')"
                " AND e.email = ANY(%s) RETURNING e.batch_id),"
                " shrunk AS ("
                " UPDATE batches SET size = size - g.n"
                " FROM (SELECT batch_id, COUNT(*) AS n FROM gone GROUP BY batch_id) g"
                " WHERE batches.id = g.batch_id RETURNING g.n)"
                " SELECT COALESCE(SUM(n), 0) FROM shrunk",
                (job_id, wanted),
            ).fetchone()
            db.execute(
                "DELETE FROM verdicts WHERE checked_at < %s AND email = ANY(%s)",
                (checked_before, wanted),
            )
            return int(row[0]) if row else 0

        return self._pg.write(work, idempotent=True) if wanted else 0

    def prune_verdicts(self, run_ttl: float) -> int:
        threshold = prune_threshold(self._clock(), run_ttl, self.jobs())
        return self._pg.write(
            lambda db: (
                db.execute("DELETE FROM verdicts WHERE checked_at < %s", (threshold,)).rowcount
            ),
            serialised=False,
        )

    def _write_planning(self, work: Callable[[Connection], None]) -> None:
        # No write lock: no other job reads a planned batch or one born done, so other
        # hosts' claims and pages go on meanwhile. Idempotent (`_landed`): one whose
        # commit's answer was lost is retried safely.
        self._pg.write(work, idempotent=True, serialised=False)

    def _insert_cached(
        self, db: Connection, job_id: str, part: Sequence[Verdict], now: float
    ) -> None:
        if _landed(db, job_id, part[0][0], "b.source = 'cache'"):
            return
        batch_id = self._new_batch(db, job_id, BatchState.DONE, len(part), "cache", now)
        with (
            db.cursor() as cursor,
            cursor.copy(
                "COPY batch_emails (batch_id, email, result, catch_all) FROM STDIN"
            ) as copy,
        ):
            for email, result, catch_all in part:
                copy.write_row((batch_id, email, result, catch_all))

    def _insert_planned(
        self, db: Connection, job_id: str, chunks: Sequence[Sequence[str]], now: float
    ) -> None:
        if _landed(db, job_id, chunks[0][0], "b.state = 'planned' AND b.attempt = 1"):
            return
        # One INSERT for every batch of the transaction; identity values are drawn in the
        # SELECT's order, so the sorted ids match the chunks' order.
        rows = db.execute(
            "INSERT INTO batches (job_id, source, state, attempt, size, updated_at)"
            " SELECT %s, 'api', 'planned', 1, t.size, %s"
            " FROM unnest(%s::integer[]) WITH ORDINALITY AS t(size, n) ORDER BY t.n"
            " RETURNING id",
            (job_id, now, [len(chunk) for chunk in chunks]),
        ).fetchall()
        ids = sorted(int(batch_id) for (batch_id,) in rows)
        with (
            db.cursor() as cursor,
            cursor.copy("COPY batch_emails (batch_id, email) FROM STDIN") as copy,
        ):
            for batch_id, chunk in zip(ids, chunks, strict=True):
                for email in chunk:
                    copy.write_row((batch_id, email))

    def _drop_planned(self, db: Connection, job_id: str) -> None:
        # Retry batches (attempt > 1) keep their attempt count, so they are not dissolved.
        where = "job_id = %s AND state = 'planned' AND attempt = 1"
        db.execute(
            f"DELETE FROM batch_emails WHERE batch_id IN (SELECT id FROM batches WHERE {where})",
            (job_id,),
        )
        db.execute(f"DELETE FROM batches WHERE {where}", (job_id,))

    def _new_batch(
        self,
        db: Connection,
        job_id: str,
        state: BatchState,
        size: int,
        source: str,
        now: float,
        attempt: int = 1,
    ) -> int:
        row = db.execute(
            "INSERT INTO batches (job_id, source, state, attempt, size, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s) RETURNING id",
            (job_id, source, state.value, attempt, size, now),
        ).fetchone()
        assert row is not None
        return int(row[0])


def _landed(db: Connection, job_id: str, first_email: str, batches: str) -> bool:
    """Whether a planning transaction starting with `first_email` committed already (its
    answer lost with the connection), looking in the job's batches matching `batches` (SQL
    on `b`). Sound because planning's emails are in no other batch
    of the job of that kind: `new` and `cached` are what the job's batches do not hold, and
    its first-attempt planned batches were dissolved first."""
    row = db.execute(
        "SELECT 1 FROM batch_emails e JOIN batches b ON b.id = e.batch_id"
        f" WHERE b.job_id = %s AND {batches} AND e.email = %s"
        " LIMIT 1",
        (job_id, first_email),
    ).fetchone()
    return row is not None

"""What both job stores (SQLite's `sqlite.store.Store`, PostgreSQL's `postgres.store.PgStore`)
do the same way: the transitions that are more than one statement, written once over each
store's own primitives. `SharedStore` is each store's root layer; a store supplies its write
transaction (`_write`: SQLite's `BEGIN IMMEDIATE`; PostgreSQL's advisory write lock, retries
and `durable=`), `_move` (the one transition, in its own SQL, `move_statement` here) and the
single statements the transitions are made of, run inside that transaction (`_unresolved`,
`_new_batch`, ...). The contract of every method is `protocol.JobStore`'s.

A transition reads the batch it changes inside its transaction, never before it: another
process may have changed the batch in between (tests/jobs/test_store_shared.py).
"""

from __future__ import annotations

import functools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Self, TypeVar

from ..errors import StateFailed, StateUnavailable
from ..options import DEFAULT_CACHE_TTL
from .plan import split_batches
from .records import BATCH_ATTEMPTS, MOVES, Batch, BatchState, Claim, Job, Verdict

DB = TypeVar("DB")
"""A store's connection, as its primitives take it inside a write transaction."""
T = TypeVar("T")

PLAN_CHUNK = 50_000
"""Emails per planning transaction: other processes on the state wait at most one."""


def move_statement(
    where: object,
    batch_id: int,
    source: BatchState,
    state: BatchState,
    fields: dict[str, Any],
    *,
    shrink: int,
    now: float,
    mark: str,
) -> tuple[str, list[Any]]:
    """The UPDATE of a batch's move from `source` to `state` (with `fields` set and `shrink`
    emails off its size), in the backend's placeholder `mark`; StateFailed (a defect) for a
    move that MOVES does not allow. `where` names the store in that message.

    >>> move_statement("s", 7, BatchState.PLANNED, BatchState.SUBMITTING, {}, shrink=0,
    ...                now=1.0, mark="?")
    ('UPDATE batches SET state = ?, updated_at = ? WHERE id = ?', ['submitting', 1.0, 7])
    """
    if state not in MOVES[source]:
        raise StateFailed(
            f"{where}: batch {batch_id} cannot move from {source} to {state}; please report it"
        )
    values = {**fields, "state": state.value}
    values.setdefault("updated_at", now)
    assignments = [f"{name} = {mark}" for name in values]
    if shrink:
        assignments.append(f"size = size - {int(shrink)}")
    sql = f"UPDATE batches SET {', '.join(assignments)} WHERE id = {mark}"
    return sql, [*values.values(), batch_id]


def prune_threshold(now: float, run_ttl: float, jobs: Iterable[Job]) -> float:
    """The check time before which no cached verdict is of use any more (`prune_verdicts`).

    Kept: everything younger than the longest TTL in use (this run's, the default, or any
    stored job's: its `created_at` less its cutoff), and everything a job not done yet may
    reuse under its cutoff. The default TTL counts whatever this run's: one `--cache-ttl 0`
    run must not empty the cache that every later default run would use.

    >>> prune_threshold(100 * 86400.0, 0.0, []) / 86400
    70.0
    """
    ttls = [run_ttl, DEFAULT_CACHE_TTL]
    keep_from = now
    for job in jobs:
        if job.cache_cutoff != float("inf"):
            ttls.append(job.created_at - job.cache_cutoff)
            if job.state != "done":
                keep_from = min(keep_from, job.cache_cutoff)
    return min(now - max(ttls), keep_from)


def retried(
    action: Any, *, attempts: int = 6, first_wait: float = 0.05, max_wait: float = 2.0
) -> Any:
    """Call `action()`, retrying on StateUnavailable (locked past the busy timeout, disk
    full) with backoff: for the commits whose loss would turn a paid POST into a resend."""
    wait = first_wait
    for attempt in range(attempts):
        try:
            return action()
        except StateUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(wait)
            wait = min(max_wait, wait * 2)
    raise AssertionError("unreachable")


class SharedStore(ABC, Generic[DB]):
    """The backend-independent part of a job store, over the store's primitives."""

    _clock: Callable[[], float]
    """Epoch seconds: the time every write stamps."""

    # -- what each store supplies ----------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the store's connections; what was committed stays."""

    @abstractmethod
    def find_batch(self, batch_id: int) -> Batch | None:
        """The batch, or None when no batch has this id."""

    @abstractmethod
    def _write(
        self, work: Callable[[DB], T], *, durable: bool = False, idempotent: bool = False
    ) -> T:
        """Run `work` in one write transaction, serialised with every writer, and return what
        it returns. `durable`: the commit survives an OS crash. `idempotent`: running `work`
        twice is running it once, so a commit whose answer was lost may be retried."""

    @abstractmethod
    def _write_planning(self, work: Callable[[DB], None]) -> None:
        """Run one of planning's transactions (`plan`), idempotent: the store's way of not
        shutting other processes out while a big job is planned."""

    @abstractmethod
    def _move(
        self,
        batch_id: int,
        state: BatchState,
        *,
        db: DB | None = None,
        durable: bool = False,
        idempotent: bool = False,
        shrink: int = 0,
        **fields: Any,
    ) -> None:
        """The one transition: move a batch to `state`, setting `fields` and taking `shrink`
        emails off its size. In the caller's transaction `db` when the move goes with other
        writes, else in one of its own (`_write`). A move that `MOVES` does not allow raises
        StateFailed (a defect), and nothing of the transaction is written."""

    @abstractmethod
    def _locked_batch(self, db: DB, batch_id: int) -> Batch:
        """The batch as the transaction `db` holds it, no other writer changing it until
        the commit; KeyError if there is none."""

    @abstractmethod
    def _unresolved(self, db: DB, batch_id: int) -> list[str]:
        """The batch's emails without a verdict, in bytewise order."""

    @abstractmethod
    def _new_batch(
        self,
        db: DB,
        job_id: str,
        state: BatchState,
        size: int,
        source: str,
        now: float,
        attempt: int = 1,
    ) -> int:
        """A new batch of the job, without its emails yet; its id."""

    @abstractmethod
    def _move_emails(self, db: DB, source: int, target: int, emails: Sequence[str]) -> None:
        """Move these emails of batch `source` into batch `target` (sizes left alone)."""

    @abstractmethod
    def _move_unresolved(self, db: DB, source: int, target: int) -> None:
        """Move batch `source`'s emails without a verdict into batch `target`."""

    @abstractmethod
    def _shrink(self, db: DB, batch_id: int, emails: int) -> None:
        """Take `emails` off the batch's size, touching nothing else."""

    @abstractmethod
    def _claim(self, db: DB, batch_id: int, now: float) -> Claim:
        """`adoption.claim_or_adopt` in the store's SQL."""

    @abstractmethod
    def _adopt(self, db: DB, job_id: str, candidates: Iterable[str], now: float) -> set[str]:
        """`adoption.adopt` in the store's SQL."""

    @abstractmethod
    def _settle_adopted(self, db: DB, batch_id: int, now: float) -> int:
        """`adoption.settle_adopted` in the store's SQL: how many were planned again."""

    @abstractmethod
    def _drop_planned(self, db: DB, job_id: str) -> None:
        """Dissolve the job's first-attempt planned batches, emails and all."""

    @abstractmethod
    def _insert_cached(self, db: DB, job_id: str, part: Sequence[Verdict], now: float) -> None:
        """One batch born `done` (source `cache`) holding `part`."""

    @abstractmethod
    def _insert_planned(
        self, db: DB, job_id: str, chunks: Sequence[Sequence[str]], now: float
    ) -> None:
        """One planned batch per chunk, in order."""

    def _before_claim(self, db: DB) -> None:
        """Runs inside `mark_submitting`'s transaction before anything is claimed: a store
        that fences claims raises here (see `PgStore.fence_claims`)."""

    # -- what they share ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, batch_id: int) -> Batch:
        found = self.find_batch(batch_id)
        if found is None:
            raise KeyError(f"no batch {batch_id}")
        return found

    def remote_errors(self, batch_id: int) -> list[dict[str, Any]]:
        """As saved by `mark_fetching`, as JSON in the batch's `error`."""
        saved = self.batch(batch_id).error
        try:
            errors = json.loads(saved) if saved else []
        except ValueError:
            return []
        return errors if isinstance(errors, list) else []

    def plan(
        self,
        job_id: str,
        *,
        cached: Sequence[Verdict],
        new: Sequence[str],
        chunk_size: int,
    ) -> None:
        """In transactions of about PLAN_CHUNK emails each, each of whole batches."""
        now = self._clock()
        self._write(lambda db: self._drop_planned(db, job_id), idempotent=True)
        for part in split_batches(cached, PLAN_CHUNK):
            self._write_planning(
                functools.partial(self._insert_cached, job_id=job_id, part=part, now=now)
            )
        # Whole batches per transaction: a batch is never cut across two of them.
        per_transaction = max(1, PLAN_CHUNK // chunk_size) * chunk_size
        for emails in split_batches(new, per_transaction):
            chunks = list(split_batches(emails, chunk_size))
            self._write_planning(
                functools.partial(self._insert_planned, job_id=job_id, chunks=chunks, now=now)
            )

    def adopt_in_flight(self, job_id: str, candidates: Iterable[str]) -> set[str]:
        """See sqlite/adoption.py and postgres/adoption.py."""
        wanted = list(candidates)  # a transaction retried reads them again
        return self._write(lambda db: self._adopt(db, job_id, wanted, self._clock()))

    def adopt_overlap(self, batch_id: int) -> Claim:
        """`adoption.claim_or_adopt`, without `mark_submitting`'s move."""
        return self._write(lambda db: self._claim(db, batch_id, self._clock()))

    def mark_submitting(self, batch_id: int) -> Claim:
        """`adoption.claim_or_adopt`, then the move only if it changed nothing."""

        def work(db: DB) -> Claim:
            self._before_claim(db)
            adopted = self._claim(db, batch_id, self._clock())
            if not adopted.changed:
                now = self._clock()
                self._move(batch_id, BatchState.SUBMITTING, db=db, submitted_at=now, updated_at=now)
            return adopted

        return self._write(work, durable=True)

    def mark_running(self, batch_id: int, *, remote_id: str, remote_href: str) -> None:
        """Retried by `retried`; `running` again is a legal move, so a retry after a lost
        answer is too."""
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

    def back_to_planned(self, batch_id: int, *, error: str | None = None) -> None:
        """Idempotent: planned again is a legal move."""
        self._move(batch_id, BatchState.PLANNED, idempotent=True, error=error)

    def mark_fetching(
        self,
        batch_id: int,
        *,
        first_href: str,
        remote_status: str,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """The `_errors` are kept as JSON in the batch's `error`."""
        self._move(
            batch_id,
            BatchState.FETCHING,
            next_href=first_href,
            remote_status=remote_status,
            error=json.dumps(list(errors)) if errors else None,
        )

    def finish(self, batch_id: int) -> None:
        """The unanswered emails counted inside the move's transaction."""

        def work(db: DB) -> None:
            unanswered = len(self._unresolved(db, batch_id))
            if unanswered:
                error = f"the API returned no verdict for {unanswered} email(s)"
                self._move(batch_id, BatchState.FAILED, db=db, next_href=None, error=error)
            else:
                self._move(batch_id, BatchState.DONE, db=db, next_href=None)

        self._write(work)

    def fail(self, batch_id: int, *, error: str) -> None:
        self._move(batch_id, BatchState.FAILED, next_href=None, error=error)

    def retry_unresolved(
        self, batch_id: int, *, error: str, next_attempt: bool = True
    ) -> int | None:
        """The batch and its unresolved emails read inside the transaction."""
        now = self._clock()

        def work(db: DB) -> int | None:
            batch = self._locked_batch(db, batch_id)
            left = self._unresolved(db, batch_id)
            if not left or (next_attempt and batch.attempt >= BATCH_ATTEMPTS):
                state = BatchState.FAILED if left else BatchState.DONE
                self._settle(db, batch_id, state, now=now, error=error)
                return None
            attempt = batch.attempt + 1 if next_attempt else batch.attempt
            new_id = self._new_batch(
                db, batch.job_id, BatchState.PLANNED, len(left), "api", now, attempt
            )
            self._move_unresolved(db, batch_id, new_id)
            self._settle(db, batch_id, BatchState.DONE, now=now, error=error, shrink=len(left))
            return new_id

        return self._write(work)

    def release_unresolved(self, batch_id: int, *, error: str | None = None) -> int:
        """The batch and its unresolved emails read inside the transaction."""
        now = self._clock()

        def work(db: DB) -> int:
            batch = self._locked_batch(db, batch_id)
            left = self._unresolved(db, batch_id)
            if left:
                # Never charged, so a first attempt: the next plan may re-cut it. Kept in the
                # job (not deleted) so `progress` counts them pending, as they are.
                new_id = self._new_batch(
                    db, batch.job_id, BatchState.PLANNED, len(left), "api", now
                )
                self._move_unresolved(db, batch_id, new_id)
            self._settle(db, batch_id, BatchState.DONE, now=now, error=error, shrink=len(left))
            return len(left)

        return self._write(work)

    def split(self, batch_id: int, size: int) -> None:
        """The batch and its unresolved emails read inside the transaction."""
        now = self._clock()

        def work(db: DB) -> None:
            batch = self._locked_batch(db, batch_id)
            emails = self._unresolved(db, batch_id)
            # The first `size` stay in the batch; the rest go into new ones.
            for chunk in split_batches(emails[size:], size):
                new_id = self._new_batch(
                    db, batch.job_id, BatchState.PLANNED, len(chunk), "api", now, batch.attempt
                )
                self._move_emails(db, batch_id, new_id, chunk)
            self._shrink(db, batch_id, max(0, len(emails) - size))

        self._write(work)

    def settle_adopted(self, batch_id: int) -> int:
        """See `adoption.settle_adopted`."""
        now = self._clock()

        def work(db: DB) -> int:
            left = self._settle_adopted(db, batch_id, now)
            self._move(batch_id, BatchState.DONE, db=db, shrink=left, updated_at=now)
            return left

        return self._write(work)

    def _settle(
        self,
        db: DB,
        batch_id: int,
        state: BatchState,
        *,
        now: float,
        error: str | None,
        shrink: int = 0,
    ) -> None:
        """End a batch whose validation is over (done or failed): no page is left to read,
        and `error` says why it ended as it did."""
        self._move(
            batch_id, state, db=db, error=error, next_href=None, shrink=shrink, updated_at=now
        )

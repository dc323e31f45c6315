"""Submit a job's planned batches one at a time, each only once the scheduler admits its size,
and decide what becomes of a batch whose POST created no known batch.

    submitter = Submitter(store, job_id, client, scheduler, counters, stop=stop, ...)
    while not submitter.should_stop():
        await submitter.submit(store.batches(job_id, BatchState.PLANNED)[0])

A POST is never abandoned halfway, because a POST whose answer is lost may have been charged.
After such a POST nothing more is sent until the server has answered something again (a poll,
a page, the key check), so a hung API costs at most one ambiguous batch.

A POST refused as a whole (a 4xx) gives its quota back. Refused for its size (a 400 naming no
item) or for the balance (`insufficient_credits`), the batch is cut in half for the rest of the
run, down to one email: what fits is used, and what was never sent is never settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

from ..api.client import ValidationClient
from ..api.responses import Validation
from ..errors import (
    ApiError,
    BadRequest,
    InputError,
    InsufficientCredits,
    JobLockLost,
    RateLimited,
    RetryableError,
    StateUnusable,
    SubmissionUnknown,
    TerminalError,
    Unauthorized,
    UsageLimited,
)
from ..quota.scheduler import Admission, Scheduler
from .backend import lock_lost
from .follow import Counters, note_double_charges, record_if_stopped
from .locks import JobLocks
from .protocol import JobStore
from .records import Batch, BatchState

_ITEM_POINTER = re.compile(r"^/emails/(\d+)(?:/email)?$")


MAX_SUBMIT_FAILURES = 5
"""Consecutive failed POSTs after which the run stops (exit 75) instead of hammering the API."""


class StopSubmitting(Exception):
    """The stop event or the deadline came before the scheduler admitted a batch, or the server
    did not answer after a POST whose fate is unknown: nothing more goes out in this run."""


class _Adopted(Exception):
    """Internal: some of the batch's emails are now in flight in another job (waiting batches
    `ids` adopt them); the POST must not go out, and the batch is re-read."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(ids)
        self.ids = ids


class Submitter:
    """Submits one job's planned batches; the engine's loop awaits `submit` for each in turn.

    `on_waiting(batch_id)` is called for each waiting batch that now adopts emails in flight
    elsewhere, and `on_running(batch_id, validation)` once a submitted batch is recorded as
    running: the engine follows both.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        client: ValidationClient,
        scheduler: Scheduler,
        counters: Counters,
        *,
        stop: asyncio.Event,
        deadline: float | None,
        chunk_size: int,
        locks: JobLocks,
        on_waiting: Callable[[int], None],
        on_running: Callable[[int, Validation], None],
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.client = client
        self.scheduler = scheduler
        self.counters = counters
        self.stop = stop
        self.deadline = deadline
        self.chunk_size = chunk_size
        self.locks = locks
        self._on_waiting = on_waiting
        self._on_running = on_running
        self._submit_failures = 0
        # A POST whose fate is unknown: nothing more goes out until the server answers again.
        self._unanswered_post = False

    def should_stop(self) -> bool:
        """True once nothing more should be submitted; records why in the counters."""
        if self.counters.out_of_credits:
            return True
        if self.stop.is_set():
            self.counters.stop_reason = self.counters.stop_reason or "interrupted"
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.counters.stop_reason = "max runtime reached"
            return True
        return self.counters.stop_reason is not None

    def server_answered(self) -> None:
        """The server answered something (a poll, a page): POSTs may go out again."""
        self._unanswered_post = False

    async def submit(self, batch: Batch) -> None:
        """POST one planned batch (or re-cut, settle or adopt it instead) and record the outcome.

        Raises StopSubmitting when nothing more should go out in this run.
        """
        if self._unanswered_post and not await self._server_answers():
            raise StopSubmitting
        # Emails the API refused in an earlier run are not sent (and paid for in quota) again.
        self.store.apply_known_rejections(batch.id)
        emails = self.store.batch_emails(batch.id, unresolved=True)
        if not emails:
            self.store.finish(batch.id)
            return
        if len(emails) > self.chunk_size:
            # A retry batch, one cut under older limits, or a smaller size learnt from a
            # refusal: re-cut it, keeping its attempt.
            self.store.split(batch.id, self.chunk_size)
            return
        # Emails another job bought since this one planned are adopted, not bought again.
        claim = self.store.adopt_overlap(batch.id)
        for waiting in claim.waiting:
            self._on_waiting(waiting)
        if claim.changed:
            return
        admissions: list[Admission] = []

        async def admit() -> None:
            # Before every attempt: a retried POST goes out later, so it is admitted again.
            if admissions:
                # The client tries again only after an answer proving nothing was accepted
                # (a 429, a refused connection): that try's quota is given back.
                self.scheduler.refund(admissions.pop())
            admissions.append(await self._admit(len(emails)))
            # Checked again in the same transaction as the move: another job may have
            # bought some of them while this one waited for quota.
            claim = self.store.mark_submitting(batch.id)
            if claim.changed:
                raise _Adopted(claim.waiting)

        try:
            validation = await self.client.start(emails, admit=admit)
        except _Adopted as exc:
            # The POST never went out: its quota is given back. An earlier attempt may have
            # moved the batch to `submitting`; the client retries only after an answer that
            # proves nothing was accepted, so the rest of it waits for a later submission.
            self.scheduler.refund(admissions.pop())
            if self.store.batch(batch.id).state is BatchState.SUBMITTING:
                self.store.back_to_planned(batch.id)
            for waiting in exc.ids:
                self._on_waiting(waiting)
            return
        except JobLockLost as exc:
            # Another run owns the job now: nothing was sent, and its batches are its own.
            self.scheduler.refund(admissions.pop())
            self.counters.stop_reason = lock_lost(self.locks, self.job_id) or str(exc)
            self.stop.set()
            return
        except BaseException as exc:
            self._close_admission(admissions, exc)
            if isinstance(exc, ApiError | InputError | StopSubmitting):
                await self._refused(batch.id, emails, exc)
                return
            # Anything else (a cancellation mid-POST, say) leaves the batch `submitting`: its
            # fate is unknown, and the next run counts it as a possible double charge.
            raise
        # Record the batch first: until this commit, a kill (or a failing ledger write) makes
        # its fate unknowable. Only then move its quota stamps to the answer's time.
        self.store.mark_running(batch.id, remote_id=validation.id, remote_href=validation.href)
        self._close_admission(admissions, None)
        self._submit_failures = 0
        self._unanswered_post = False
        self._on_running(batch.id, validation)
        self.counters.batches_submitted += 1
        self.counters.emails_submitted += len(emails)

    async def _admit(self, size: int) -> Admission:
        """Wait for the scheduler's admission, unless the stop or the deadline comes first."""
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and self.scheduler.wait_for(size) > remaining:
            self.counters.stop_reason = "max runtime reached before the quota allows more"
            raise StopSubmitting
        admit = asyncio.ensure_future(self.scheduler.admit(size))
        stop_waiter = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait(
                {admit, stop_waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_waiter.cancel()
        if not admit.done():
            admit.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await admit
            self.should_stop()
            raise StopSubmitting
        return admit.result()

    async def _server_answers(self) -> bool:
        """After a POST whose fate is unknown, ask the server something harmless (the key
        check) before sending anything else: a hung API costs at most one ambiguous batch."""
        try:
            await self.client.check_key()
        except RetryableError as exc:
            if not record_if_stopped(self.counters, self.stop, exc):
                self.counters.stop_reason = (
                    f"the API stopped answering after a batch whose fate is unknown ({exc}); "
                    "run again later"
                )
            return False
        except InsufficientCredits as exc:
            self.counters.ran_out_of_credits(str(exc))
            return False
        except StateUnusable:
            raise  # a state file gone bad (the ledger, at the check's request slot), not the API
        except InputError as exc:
            # Not the API's own answer (a bare 404 from a proxy, say): batches were paid
            # already, so this is "not now" (exit 75), never "nothing was spent" (exit 2).
            self.counters.stop_reason = f"the API did not answer as itself ({exc}); run again later"
            return False
        except Unauthorized:
            raise
        except TerminalError:
            # A refusal is an answer all the same: the server is alive.
            pass
        self.server_answered()
        return True

    def _close_admission(self, admissions: list[Admission], exc: BaseException | None) -> None:
        """The POST's last try was answered: its stamps move to now, or its quota is given
        back when the answer proves nothing was accepted (a 4xx refusal)."""
        if not admissions:
            return
        if isinstance(exc, TerminalError | InputError | UsageLimited | RateLimited):
            self.scheduler.refund(admissions[-1])
        else:
            self.scheduler.accepted(admissions[-1])

    async def _refused(self, batch_id: int, emails: list[str], exc: BaseException) -> None:
        """The POST did not create a known batch: decide what becomes of it."""
        if isinstance(exc, StopSubmitting):
            # Any earlier attempt was refused outright, so nothing exists on the server.
            self.store.back_to_planned(batch_id)
            raise exc
        if isinstance(exc, UsageLimited):
            # Our ledger and the server's disagree: the server's word wins.
            self.scheduler.pause_submissions(exc.retry_after or 60.0)
            self.store.back_to_planned(batch_id, error=str(exc))
        elif isinstance(exc, SubmissionUnknown):
            note_double_charges(self.store, self.job_id, self.counters, len(emails))
            self.counters.notes.append(str(exc))
            self.store.back_to_planned(batch_id, error=str(exc))
            self._unanswered_post = True
            await self._after_failed_submit()
        elif isinstance(exc, InsufficientCredits):
            self.store.back_to_planned(batch_id, error=str(exc))
            if not self._smaller_batches(len(emails)):
                self.counters.ran_out_of_credits(str(exc))
        elif isinstance(exc, BadRequest):
            self._reject_items(batch_id, emails, exc)
        elif isinstance(exc, RetryableError):
            # Every retryable answer to a POST proves no batch was created: planned again.
            self.store.back_to_planned(batch_id, error=str(exc))
            if not record_if_stopped(self.counters, self.stop, exc):
                await self._after_failed_submit()
        else:
            # Refused outright (key, wrong URL, ...): nothing exists on the server.
            self.store.back_to_planned(batch_id)
            raise exc

    def _smaller_batches(self, size: int) -> bool:
        """Halve the batch size for the rest of this run (a refusal of the whole batch may
        not hold for a smaller one); False when the batch was a single email already."""
        if size <= 1:
            return False
        self.chunk_size = min(self.chunk_size, max(1, size // 2))
        return True

    async def _after_failed_submit(self) -> None:
        self._submit_failures += 1
        if self._submit_failures >= MAX_SUBMIT_FAILURES:
            self.counters.stop_reason = "the API keeps failing; run again later"
            return
        # Back off before the next POST, but a stop request ends the wait at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=min(60.0, 2.0**self._submit_failures))

    def _reject_items(self, batch_id: int, emails: list[str], exc: BadRequest) -> None:
        """A 400 naming items (`/emails/3/email`): those emails are dropped (and remembered),
        the rest resent. A 400 naming none refused the batch as a whole (its size, say):
        nothing was sent, so nothing is settled; smaller batches are tried, down to one
        email, and then the run stops so that a later one retries."""
        refused = {
            emails[int(match.group(1))]
            for error in exc.errors
            if (match := _ITEM_POINTER.match(str((error.get("source") or {}).get("pointer") or "")))
            and int(match.group(1)) < len(emails)
        }
        if refused:
            self.store.remember_rejected(batch_id, sorted(refused), error=str(exc))
        self.store.back_to_planned(batch_id, error=str(exc))
        if refused or self._smaller_batches(len(emails)):
            return
        self.counters.stop_reason = (
            f"the API refused a batch of one email without naming it ({exc}); nothing was "
            "sent: check --usage-limit and --chunk-size against the account, then run again"
        )

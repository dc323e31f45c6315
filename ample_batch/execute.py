"""Drive a job's batches through their state machine against the API.

Resume first: batches already running or fetching are followed before anything new goes out.
Then planned batches are submitted one at a time, each only once the scheduler admits its size,
while every submitted batch is followed concurrently (poll, honouring Retry-After, then page
through the results, committing each page). Retry batches born from validations that ended in
`error` are picked up by the same loop.

The engine stops submitting when asked to (deadline, interrupt), when the account is out of
credits, or when the API keeps failing; it never abandons a POST halfway, because a POST whose
answer is lost may have been charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import ValidationClient
from .errors import (
    BadRequest,
    InputError,
    InsufficientCredits,
    NotFound,
    RetryableError,
    RetryInterrupted,
    SubmissionUnknown,
    TerminalError,
    UnsafeLink,
    UsageLimited,
)
from .match import ResultMatcher
from .responses import Validation, failed_validation
from .schedule import Scheduler
from .schema import Batch, BatchState
from .store import Store

_ITEM_POINTER = re.compile(r"^/emails/(\d+)(?:/email)?$")
MAX_SUBMIT_FAILURES = 5
"""Consecutive failed POSTs after which the run stops (exit 75) instead of hammering the API."""


@dataclass
class Counters:
    """What this run did, updated live for progress display and the summary."""

    batches_submitted: int = 0
    emails_submitted: int = 0
    emails_resolved: int = 0
    possible_double_charges: int = 0
    stop_reason: str | None = None
    out_of_credits: bool = False
    notes: list[str] = field(default_factory=list)


class _StopSubmitting(Exception):
    """Internal: the stop event or the deadline came before the scheduler admitted a batch."""


class _Adopted(Exception):
    """Internal: some of the batch's emails are now in flight in another job (waiting batches
    `ids` adopt them); the POST must not go out, and the batch is re-read."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(ids)
        self.ids = ids


class Engine:
    """Runs one job's batches to completion, or until told to stop."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        client: ValidationClient,
        scheduler: Scheduler,
        *,
        stop: asyncio.Event,
        deadline: float | None = None,
        chunk_size: int | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.client = client
        self.scheduler = scheduler
        self.stop = stop
        self.deadline = deadline
        self.chunk_size = chunk_size or scheduler.config.usage_limit.count
        self.counters = Counters()
        self._now = wall_clock
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._submit_failures = 0

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> Counters:
        """Resume open batches, submit planned ones, follow all until done or stopped."""
        for batch in self.store.batches(
            self.job_id,
            BatchState.SUBMITTING,
            BatchState.RUNNING,
            BatchState.FETCHING,
            BatchState.WAITING,
        ):
            if batch.state is BatchState.WAITING:
                self._await_adopted(batch.id)
            elif batch.state is BatchState.SUBMITTING:
                # The last run died mid-POST: the batch may exist and be charged. It is sent
                # again (there is no way to look it up) and counted as a possible double charge.
                self._possible_double_charges(batch.size)
                self.store.back_to_planned(batch.id, error="the previous run lost this POST")
            else:
                self._follow_in_background(batch)
        try:
            await self._submit_loop()
        finally:
            await self._drain()
        return self.counters

    async def _submit_loop(self) -> None:
        while not self._should_stop_submitting():
            planned = self.store.batches(self.job_id, BatchState.PLANNED)
            if planned:
                try:
                    await self._submit(planned[0])
                except _StopSubmitting:
                    return
                continue
            if not self._tasks:
                return
            # Nothing to submit yet: wait for a batch to finish (it may re-queue emails).
            await self._wait_any(set(self._tasks.values()))

    def _should_stop_submitting(self) -> bool:
        if self.counters.out_of_credits:
            return True
        if self.stop.is_set():
            self.counters.stop_reason = self.counters.stop_reason or "interrupted"
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.counters.stop_reason = "max runtime reached"
            return True
        return self.counters.stop_reason is not None

    async def _drain(self) -> None:
        """Wait for followed batches; on stop, cancel the ones still waiting on the server."""
        while self._tasks:
            if self.stop.is_set() or self._past_deadline():
                for batch_id, task in list(self._tasks.items()):
                    if self.store.batch(batch_id).state in (BatchState.RUNNING, BatchState.WAITING):
                        task.cancel()
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
                break
            await self._wait_any(set(self._tasks.values()))
        self._raise_task_errors()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def _wait_any(self, tasks: set[asyncio.Task[None]]) -> None:
        stop_waiter = asyncio.ensure_future(self.stop.wait())
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            await asyncio.wait(
                {*tasks, stop_waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_waiter.cancel()
        self._raise_task_errors()

    def _raise_task_errors(self) -> None:
        """Re-raise the first error a follow task could not handle (unauthorized, say)."""
        for batch_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[batch_id]
                if not task.cancelled() and task.exception() is not None:
                    for other in self._tasks.values():
                        other.cancel()
                    raise task.exception()  # type: ignore[misc]

    # -- submitting ----------------------------------------------------------------------

    async def _admit(self, size: int) -> None:
        """Wait for the scheduler's admission, unless the stop or the deadline comes first."""
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and self.scheduler.wait_for(size) > remaining:
            self.counters.stop_reason = "max runtime reached before the quota allows more"
            raise _StopSubmitting
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
            self._should_stop_submitting()
            raise _StopSubmitting
        admit.result()

    async def _submit(self, batch: Batch) -> None:
        emails = self.store.batch_emails(batch.id, unresolved=True)
        if not emails:
            self.store.finish(batch.id)
            return
        if len(emails) > self.chunk_size:
            # A retry batch, or one cut under older limits: re-cut it, keeping its attempt.
            self.store.split(batch.id, self.chunk_size)
            return
        # Emails another job bought since this one planned are adopted, not bought again.
        claim = self.store.adopt_overlap(batch.id)
        for waiting in claim.waiting:
            self._await_adopted(waiting)
        if claim.changed:
            return

        async def admit() -> None:
            # Before every attempt: a retried POST goes out later, so it is admitted again.
            await self._admit(len(emails))
            # Checked again in the same transaction as the move: another job may have
            # bought some of them while this one waited for quota.
            claim = self.store.mark_submitting(batch.id)
            if claim.changed:
                raise _Adopted(claim.waiting)

        try:
            validation = await self.client.start(emails, admit=admit)
        except _Adopted as exc:
            for waiting in exc.ids:
                self._await_adopted(waiting)
            return
        except _StopSubmitting:
            # Any earlier attempt was refused outright, so nothing exists on the server.
            self.store.back_to_planned(batch.id)
            raise
        except UsageLimited as exc:
            # Our ledger and the server's disagree: the server's word wins.
            self.scheduler.pause_submissions(exc.retry_after or 60.0)
            self.store.back_to_planned(batch.id, error=str(exc))
            return
        except SubmissionUnknown as exc:
            self.scheduler.accepted(len(emails))  # it may have been: count it when it may have
            self._possible_double_charges(len(emails))
            self.counters.notes.append(str(exc))
            self.store.back_to_planned(batch.id, error=str(exc))
            await self._after_failed_submit()
            return
        except InsufficientCredits as exc:
            self.counters.out_of_credits = True
            self.counters.notes.append(str(exc))
            self.store.back_to_planned(batch.id, error=str(exc))
            return
        except BadRequest as exc:
            self._reject_items(batch.id, emails, exc)
            return
        except RetryableError as exc:
            # Every retryable answer to a POST proves no batch was created: planned again.
            self.store.back_to_planned(batch.id, error=str(exc))
            if not self._record_if_stopped(exc):
                await self._after_failed_submit()
            return
        except (TerminalError, InputError):
            # Refused outright (key, wrong URL, ...): nothing exists on the server.
            self.store.back_to_planned(batch.id)
            raise
        # Anything else (a cancellation mid-POST, say) leaves the batch `submitting`: its fate
        # is unknown, and the next run counts it as a possible double charge.
        # Record the batch first: until this commit, a kill makes its fate unknowable.
        self.store.mark_running(batch.id, remote_id=validation.id, remote_href=validation.href)
        self.scheduler.accepted(len(emails))
        self._submit_failures = 0
        self._note_poll(batch.id, validation)
        self.counters.batches_submitted += 1
        self.counters.emails_submitted += len(emails)
        self._follow_in_background(self.store.batch(batch.id), validation)

    def _possible_double_charges(self, emails: int) -> None:
        self.counters.possible_double_charges += emails
        self.store.note_possible_double_charges(self.job_id, emails)

    async def _after_failed_submit(self) -> None:
        self._submit_failures += 1
        if self._submit_failures >= MAX_SUBMIT_FAILURES:
            self.counters.stop_reason = "the API keeps failing; run again later"
            return
        # Back off before the next POST, but a stop request ends the wait at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=min(60.0, 2.0**self._submit_failures))

    def _reject_items(self, batch_id: int, emails: list[str], exc: BadRequest) -> None:
        """A 400 naming one item (`/emails/3/email`): that email is dropped, the rest resent."""
        rejected = False
        for error in exc.errors:
            pointer = str((error.get("source") or {}).get("pointer") or "")
            match = _ITEM_POINTER.match(pointer)
            if match and int(match.group(1)) < len(emails):
                self.store.reject_email(batch_id, emails[int(match.group(1))])
                rejected = True
        if rejected:
            self.store.back_to_planned(batch_id, error=str(exc))
        else:
            self.store.fail(batch_id, error=str(exc))

    # -- following -----------------------------------------------------------------------

    def _follow_in_background(self, batch: Batch, validation: Validation | None = None) -> None:
        self._tasks[batch.id] = asyncio.create_task(self.follow(batch, validation))

    def _await_adopted(self, batch_id: int) -> None:
        from .inflight import await_adopted

        self._tasks[batch_id] = asyncio.create_task(await_adopted(self, self.store.batch(batch_id)))

    def _note_poll(self, batch_id: int, validation: Validation) -> None:
        if validation.retry_after is not None:
            self.store.note_poll(batch_id, poll_after=self._now() + validation.retry_after)

    async def follow(self, batch: Batch, validation: Validation | None = None) -> None:
        """Poll a submitted batch until terminal, then page its results into the store.

        If the API stays unreachable past the retry budget, the batch is left as it is (the
        next run resumes it) and the run stops submitting. A stop request that cuts a retry's
        wait short leaves the batch so too, without blaming the API.
        """
        try:
            await self._follow(batch, validation)
        except RetryableError as exc:
            if self._record_if_stopped(exc):
                return
            self.counters.stop_reason = f"the API keeps failing ({exc}); run again later"
            self.counters.notes.append(str(exc))

    def _record_if_stopped(self, exc: RetryableError) -> bool:
        """If the retries ended because a stop was asked for (not because the API kept
        failing), keep or set the stop's reason and return True: no failure is counted then.

        The reason also stops submitting when only the client saw the stop, so a POST is
        never resent at once after a cut-short wait.
        """
        if not (isinstance(exc, RetryInterrupted) or self.stop.is_set()):
            return False
        self.counters.stop_reason = self.counters.stop_reason or "interrupted"
        return True

    async def _follow(self, batch: Batch, validation: Validation | None) -> None:
        if batch.state is BatchState.RUNNING:
            assert batch.remote_id is not None and batch.remote_href is not None
            if validation is None:
                wait = max(0.0, (batch.poll_after or 0.0) - self._now())
                validation = Validation(
                    id=batch.remote_id, status="queued", href=batch.remote_href, retry_after=wait
                )
            try:
                validation = await self.client.wait(
                    validation, on_poll=lambda v: self._note_poll(batch.id, v)
                )
            except NotFound as exc:
                self.store.retry_unresolved(batch.id, error=str(exc))
                return
            self.store.mark_fetching(
                batch.id,
                first_href=validation.href,
                remote_status=validation.status,
                errors=validation.errors,
            )
            await self._fetch(batch.id, validation, validation.status, validation.errors)
        elif batch.state is BatchState.FETCHING:
            assert batch.remote_status is not None
            errors = self.store.remote_errors(batch.id)
            if batch.next_href is None:
                self._settle(batch.id, batch.remote_status, errors)
                return
            await self._fetch(batch.id, batch.next_href, batch.remote_status, errors)

    async def _fetch(
        self,
        batch_id: int,
        start: Validation | str,
        status: str,
        errors: list[dict[str, object]],
    ) -> None:
        matcher = ResultMatcher(self.store.batch_emails(batch_id))
        try:
            async for page in self.client.pages(start):
                verdicts = [
                    (email, result.result, result.catch_all)
                    for result in page.results
                    for email in matcher.match(result.email, (result.result, result.catch_all))
                ]
                self.store.record_page(batch_id, verdicts, next_href=page.next_href)
                self.counters.emails_resolved += len(verdicts)
        except UnsafeLink as exc:
            self.store.fail(batch_id, error=str(exc))
            return
        # Emails the API answered under another spelling shared with a sibling (`bar+x@` and
        # `bar@` submitted, one `bar@` result): they share its verdict.
        leftovers = matcher.siblings(self.store.batch_emails(batch_id, unresolved=True))
        if leftovers:
            self.store.record_page(batch_id, leftovers, next_href=None)
            self.counters.emails_resolved += len(leftovers)
        self._settle(batch_id, status, errors)

    def _settle(self, batch_id: int, status: str, errors: list[dict[str, object]]) -> None:
        """All pages are in: close the batch according to how the validation ended."""
        if status == "completed":
            self.store.finish(batch_id)
        elif status == "canceled":
            self.store.release_unresolved(batch_id, error="canceled")
        else:
            failure = failed_validation(
                Validation(id=str(batch_id), status=status, href="", errors=list(errors))
            )
            if isinstance(failure, InsufficientCredits):
                self.counters.out_of_credits = True
                self.counters.notes.append(str(failure))
                self.store.release_unresolved(batch_id, error=str(failure))
            else:
                self.store.retry_unresolved(batch_id, error=str(failure))

"""Drive a job's batches through their state machine against the API.

Resume first: batches already running or fetching are followed before anything new goes out.
Then planned batches are submitted one at a time, each only once the scheduler admits its size,
while every submitted batch is followed concurrently (poll, honouring Retry-After, then page
through the results, committing each page). Retry batches born from validations that ended in
`error` are picked up by the same loop.

The engine stops submitting when asked to (deadline, interrupt), when the account is out of
credits, or when the API keeps failing; it never abandons a POST halfway, because a POST whose
answer is lost may have been charged. After such a POST nothing more is sent until the server
has answered something again (a poll, a page, the key check), so a hung API costs at most one
ambiguous batch.

A POST refused as a whole (a 4xx) gives its quota back. Refused for its size (a 400 naming no
item) or for the balance (`insufficient_credits`), the batch is cut in half for the rest of the
run, down to one email: what fits is used, and what was never sent is never settled.
Following is `follow.py`'s.
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
    SubmissionUnknown,
    TerminalError,
    Unauthorized,
    UsageLimited,
)
from ..quota.scheduler import Admission, Scheduler
from .backend import fence_claims, lock_lost, locks_of
from .follow import Counters, Follower, FollowPolicy, note_double_charges, record_if_stopped
from .inflight import await_adopted
from .locks import JobLocks
from .protocol import JobStore
from .records import Batch, BatchState

_ITEM_POINTER = re.compile(r"^/emails/(\d+)(?:/email)?$")


MAX_SUBMIT_FAILURES = 5
"""Consecutive failed POSTs after which the run stops (exit 75) instead of hammering the API."""


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
        store: JobStore,
        job_id: str,
        client: ValidationClient,
        scheduler: Scheduler,
        *,
        stop: asyncio.Event,
        deadline: float | None = None,
        chunk_size: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        follow_policy: FollowPolicy | None = None,
        locks: JobLocks | None = None,
    ) -> None:
        self.store = store
        # Other jobs' locks: an adopted batch whose run is gone is followed here (inflight.py).
        self.locks: JobLocks = locks if locks is not None else locks_of(store)
        # With shared state every claim checks that this run still holds the job's lock.
        fence_claims(store, self.locks, job_id)
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
        # A POST whose fate is unknown: nothing more goes out until the server answers again.
        self._unanswered_post = False
        self.follower = Follower(
            store,
            job_id,
            client,
            self.counters,
            stop=stop,
            deadline=deadline,
            wall_clock=wall_clock,
            policy=follow_policy or FollowPolicy(),
            on_answer=self._server_answered,
        )

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
        # The cancel watcher stopped the run because another run took the job: say so.
        lost = lock_lost(self.locks, self.job_id)
        if lost is not None and self.stop.is_set():
            self.counters.stop_reason = lost
        return self.counters

    async def _submit_loop(self) -> None:
        while not self._should_stop_submitting():
            planned = self.store.batches(self.job_id, BatchState.PLANNED)
            if planned:
                if self._unanswered_post and not await self._server_answers():
                    return
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

    async def _admit(self, size: int) -> Admission:
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
            self.counters.out_of_credits = True
            self.counters.notes.append(str(exc))
            return False
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
        self._server_answered()
        return True

    def _server_answered(self) -> None:
        self._unanswered_post = False

    async def _submit(self, batch: Batch) -> None:
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
            self._await_adopted(waiting)
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
                self._await_adopted(waiting)
            return
        except JobLockLost as exc:
            # Another run owns the job now: nothing was sent, and its batches are its own.
            self.scheduler.refund(admissions.pop())
            self.counters.stop_reason = lock_lost(self.locks, self.job_id) or str(exc)
            self.stop.set()
            return
        except BaseException as exc:
            self._close_admission(admissions, exc)
            if isinstance(exc, ApiError | InputError | _StopSubmitting):
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
        self.follower.note_poll(batch.id, validation)
        self.counters.batches_submitted += 1
        self.counters.emails_submitted += len(emails)
        self._follow_in_background(self.store.batch(batch.id), validation)

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
        if isinstance(exc, _StopSubmitting):
            # Any earlier attempt was refused outright, so nothing exists on the server.
            self.store.back_to_planned(batch_id)
            raise exc
        if isinstance(exc, UsageLimited):
            # Our ledger and the server's disagree: the server's word wins.
            self.scheduler.pause_submissions(exc.retry_after or 60.0)
            self.store.back_to_planned(batch_id, error=str(exc))
        elif isinstance(exc, SubmissionUnknown):
            self._possible_double_charges(len(emails))
            self.counters.notes.append(str(exc))
            self.store.back_to_planned(batch_id, error=str(exc))
            self._unanswered_post = True
            await self._after_failed_submit()
        elif isinstance(exc, InsufficientCredits):
            self.store.back_to_planned(batch_id, error=str(exc))
            if not self._smaller_batches(len(emails)):
                self.counters.out_of_credits = True
                self.counters.notes.append(str(exc))
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

    def _possible_double_charges(self, emails: int) -> None:
        note_double_charges(self.store, self.job_id, self.counters, emails)

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

    # -- following -----------------------------------------------------------------------

    def _await_adopted(self, batch_id: int) -> None:
        self._tasks[batch_id] = asyncio.create_task(await_adopted(self, self.store.batch(batch_id)))

    async def follow(self, batch: Batch, validation: Validation | None = None) -> None:
        """Poll a submitted batch until terminal, then page its results into the store."""
        await self.follower.follow(batch, validation)

    def _follow_in_background(self, batch: Batch, validation: Validation | None = None) -> None:
        self._tasks[batch.id] = asyncio.create_task(self.follower.follow(batch, validation))

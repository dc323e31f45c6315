"""Follow submitted batches: poll each until terminal, page its results into the store, settle it.

One bad batch never blocks a job. The client retries what may pass (a 5xx, a timeout, a 429);
an answer it cannot fix by trying again at once (a 4xx, a redirect, an unknown status) is
tried again here, slowly, within a `FollowPolicy` whose bounds are counted on the batch across
runs; then that batch alone is settled and the others go on. A 404 on a poll right after the
202 is not proof that a batch is gone (the API may not have caught up with itself): it is
bought again only once its 404s have lasted, and the resend is counted as a possible double
charge. Unauthorized still ends the run; a 402 stops it as out of credits.

A --simulate run's API is a fake living in its process (`FollowPolicy.resend_unknown`): an
earlier run's batch it does not know was sent to that run's fake, gone with its process.
Waiting would only wait out the 404 rule, and buying it again costs nothing, so its unresolved
emails are sent again at once, uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..api.match import ResultMatcher
from ..api.responses import TERMINAL_STATUSES, Validation, failed_validation
from ..errors import (
    ApiError,
    InsufficientCredits,
    NotFound,
    RetryableError,
    RetryInterrupted,
    TerminalError,
    Unauthorized,
)
from .protocol import JobStore
from .records import Batch, BatchState

if TYPE_CHECKING:  # a type only: the summary's Counters must not load aiohttp for `status`
    from ..api.client import ValidationClient

KNOWN_STATUSES = frozenset({"queued", "processing", *TERMINAL_STATUSES})
FORGOTTEN = "the simulated API that ran this batch is gone with its run: sent again"
FORGOTTEN_NOTE = (
    "batches an earlier --simulate run left in flight were sent again (its simulated API "
    "is gone with it; no credit is spent)"
)


@dataclass(frozen=True, kw_only=True)
class FollowPolicy:
    """How long a batch whose polls or pages keep failing for good (a 4xx, a redirect, an
    unknown status) is tried again before it is settled. Both bounds must be reached, counted
    across runs: one long pause (a laptop asleep) or one burst of errors is not enough."""

    failures: int = 5
    """Failures in a row, at least."""
    span: float = 600.0
    """Seconds from the first of them, at least."""
    backoff_initial: float = 2.0
    """First wait before trying again (it doubles)."""
    backoff_max: float = 60.0
    """Longest wait between tries."""
    resend_unknown: bool = False
    """A batch from an earlier run that the API answers 404 for is sent again at once, as
    the same attempt and not counted as a double charge: for --simulate, whose fake forgets
    every batch when its process ends (nothing was paid). A batch this run sent keeps the
    rule above, so an API that forgets everything cannot make a loop of it. Never for a real
    API: its 404 right after a 202 may be its lag, and a resend may pay twice."""

    def backoff(self, failures: int) -> float:
        return min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, failures - 1))


OUT_OF_CREDITS = "out of credits"
"""The stop reason of a run that ended with exit 4."""


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

    def ran_out_of_credits(self, note: str) -> None:
        """The account is out of credits: stop submitting, and say so as the stop's reason
        (whatever stopped the run too: its exit, 4, is this one's).

        >>> counters = Counters(stop_reason="interrupted")
        >>> counters.ran_out_of_credits("402: no credits left")
        >>> counters.stop_reason, counters.out_of_credits
        ('out of credits', True)
        """
        self.out_of_credits = True
        self.stop_reason = OUT_OF_CREDITS
        self.notes.append(note)


class Follower:
    """Follows one job's submitted batches; `follow` is run as one task per batch."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        client: ValidationClient,
        counters: Counters,
        *,
        stop: asyncio.Event,
        deadline: float | None,
        wall_clock: Callable[[], float],
        policy: FollowPolicy,
        on_answer: Callable[[], None],
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.client = client
        self.counters = counters
        self.stop = stop
        self.deadline = deadline
        self.policy = policy
        self._now = wall_clock
        # Called whenever the server answers a poll or a page: it is alive.
        self.on_answer = on_answer
        self._failing: set[int] = set()

    def _double_charges(self, emails: int) -> None:
        note_double_charges(self.store, self.job_id, self.counters, emails)

    def note_poll(self, batch_id: int, validation: Validation) -> None:
        if validation.retry_after is not None:
            self.store.note_poll(batch_id, poll_after=self._now() + validation.retry_after)

    async def follow(self, batch: Batch, validation: Validation | None = None) -> None:
        """Poll a submitted batch until terminal, then page its results into the store.

        If the API stays unreachable past the retry budget, the batch is left as it is (the
        next run resumes it) and the run stops submitting. A stop request that cuts a retry's
        wait short leaves the batch so too, without blaming the API. An answer that trying
        again cannot fix in the client (a 4xx, a redirect, an unknown status) is tried again
        here, slowly, within the policy; then this batch alone is settled.
        """
        if self.store.follow_failures(batch.id):
            self._failing.add(batch.id)
        # Followed from its 202: this run sent it, so this run's API knows it.
        sent_here = validation is not None
        while True:
            try:
                await self._follow(batch, validation)
                return
            except RetryableError as exc:
                if record_if_stopped(self.counters, self.stop, exc):
                    return
                self.counters.stop_reason = f"the API keeps failing ({exc}); run again later"
                self.counters.notes.append(str(exc))
                return
            except InsufficientCredits as exc:
                # A 402 on a GET: the run stops as out of credits; the batch is resumed later.
                self._out_of_credits(exc)
                return
            except Unauthorized:
                raise
            except TerminalError as exc:
                if isinstance(exc, NotFound) and self.policy.resend_unknown and not sent_here:
                    self._resend_forgotten(batch.id)
                    return
                failures, first = self.store.note_follow_failure(batch.id, self._now())
                self._failing.add(batch.id)
                policy = self.policy
                if failures >= policy.failures and self._now() - first >= policy.span:
                    self._give_up(self.store.batch(batch.id), exc)
                    return
                if not await self._pause(policy.backoff(failures)):
                    return  # stopped: the batch stays as it is; the next run goes on counting
            batch, validation = self.store.batch(batch.id), None

    def _out_of_credits(self, exc: InsufficientCredits) -> None:
        self.counters.ran_out_of_credits(str(exc))

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` unless the stop or the deadline comes first; True if it did not."""
        if self.deadline is not None:
            seconds = min(seconds, self.deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, seconds))
        return not (
            self.stop.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)
        )

    def _resend_forgotten(self, batch_id: int) -> None:
        """The simulated API does not know the batch (an earlier run's fake sent it): its
        unresolved emails go into a new planned batch of the same attempt, so a trial stopped
        again and again never ends in `failed`, and this run sends them."""
        if self.store.batch(batch_id).state in (BatchState.RUNNING, BatchState.FETCHING):
            self.store.retry_unresolved(batch_id, error=FORGOTTEN, next_attempt=False)
            if FORGOTTEN_NOTE not in self.counters.notes:
                self.counters.notes.append(FORGOTTEN_NOTE)

    def _give_up(self, batch: Batch, exc: ApiError) -> None:
        """The batch's polls or pages failed for long enough: settle it, and only it."""
        error = f"gave up on this batch after repeated errors: {exc}"
        self.counters.notes.append(f"batch {batch.id}: {error}")
        unresolved = len(self.store.batch_emails(batch.id, unresolved=True))
        if batch.state is BatchState.RUNNING and isinstance(exc, NotFound):
            # Unknown to the API over minutes, not just right after its 202: bought again,
            # and counted, since it may have existed (and been charged) after all.
            if self.store.retry_unresolved(batch.id, error=error) is not None:
                self._double_charges(unresolved)
        elif batch.state is BatchState.FETCHING and batch.remote_status != "completed":
            # Canceled or errored: its unread emails go again as the status says, counted
            # since some of them were validated (and charged) on pages we could not read.
            self._settle(
                batch.id, batch.remote_status or "error", self.store.remote_errors(batch.id)
            )
            self._double_charges(
                unresolved - len(self.store.batch_emails(batch.id, unresolved=True))
            )
        else:
            # It exists and was (or will be) charged, but cannot be read: buying it again
            # would pay twice for sure. Its unread emails are written `failed`.
            self.store.fail(batch.id, error=error)

    def _polled(self, batch_id: int, validation: Validation) -> None:
        """A poll was answered: the server is alive, and the batch can be read."""
        if validation.status not in KNOWN_STATUSES:
            raise TerminalError(f"the API answered with an unknown status {validation.status!r}")
        self._answered(batch_id)
        self.note_poll(batch_id, validation)

    def _answered(self, batch_id: int) -> None:
        self.on_answer()
        if batch_id in self._failing:
            self._failing.discard(batch_id)
            self.store.clear_follow_failures(batch_id)

    async def _follow(self, batch: Batch, validation: Validation | None) -> None:
        if batch.state is BatchState.RUNNING:
            assert batch.remote_id is not None and batch.remote_href is not None
            if validation is None:
                wait = max(0.0, (batch.poll_after or 0.0) - self._now())
                validation = Validation(
                    id=batch.remote_id, status="queued", href=batch.remote_href, retry_after=wait
                )
            validation = await self.client.wait(
                validation, on_poll=lambda v: self._polled(batch.id, v)
            )
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
        matcher = ResultMatcher(StoredEmails(self.store, batch_id))
        # Pages committed before a restart: their `+tag` siblings still get their verdicts.
        matcher.recall(self.store.batch_verdicts(batch_id))
        async for page in self.client.pages(start):
            self._answered(batch_id)
            verdicts = matcher.match_page(
                [(result.email, result.result, result.catch_all) for result in page.results]
            )
            # Recorded before the next page is matched: the matcher looks its verdicts up.
            self.store.record_page(batch_id, verdicts, next_href=page.next_href)
            self.counters.emails_resolved += len(verdicts)
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
            # Canceled by `cancel` or through the API: its emails are planned again, and
            # this run must not buy at once what someone just canceled. The next run does.
            self.counters.stop_reason = self.counters.stop_reason or "canceled"
        else:
            failure = failed_validation(
                Validation(id=str(batch_id), status=status, href="", errors=list(errors))
            )
            if isinstance(failure, InsufficientCredits):
                self._out_of_credits(failure)
                self.store.release_unresolved(batch_id, error=str(failure))
            else:
                self.store.retry_unresolved(batch_id, error=str(failure))


class StoredEmails:
    """A batch's submitted emails as its matcher sees them: looked up in the store page by
    page, so that many batches can be paged at once without holding their emails."""

    def __init__(self, store: JobStore, batch_id: int) -> None:
        self.store = store
        self.batch_id = batch_id

    def states(self, emails: Collection[str]) -> dict[str, bool]:
        return self.store.batch_email_states(self.batch_id, emails)

    def every(self) -> Iterable[str]:
        return self.store.batch_emails(self.batch_id)

    def note(self, emails: Iterable[str]) -> None:
        """Nothing to keep: the page's verdicts are recorded before the next page is matched."""


def note_double_charges(store: JobStore, job_id: str, counters: Counters, emails: int) -> None:
    """Count emails that a resent batch may have paid for twice, in the run and the job."""
    if emails > 0:
        counters.possible_double_charges += emails
        store.note_possible_double_charges(job_id, emails)


def record_if_stopped(counters: Counters, stop: asyncio.Event, exc: RetryableError) -> bool:
    """If the retries ended because a stop was asked for (not because the API kept
    failing), keep or set the stop's reason and return True: no failure is counted then.

    The reason also stops submitting when only the client saw the stop, so a POST is
    never resent at once after a cut-short wait.
    """
    if not (isinstance(exc, RetryInterrupted) or stop.is_set()):
        return False
    counters.stop_reason = counters.stop_reason or "interrupted"
    return True

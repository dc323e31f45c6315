"""The scheduler: when may the next batch be submitted, and the next request be sent.

Two ledgers, both sliding-window logs (pyrate-limiter's `SlidingWindowLog`, exact):

- the usage ledger counts emails submitted, one entry per email (weight = batch size);
- the request ledger counts HTTP requests, every endpoint, polls and page fetches included.

With a `ledger_dir` both are shared by every process and every cron run on that key, and a
restart remembers the last window (`backends.open_ledgers` picks where they live). Each window
is widened by a small margin so that network latency cannot squeeze two windows' worth into
one on the server.

    async with Scheduler(ScheduleConfig(ledger_dir=state_dir, key_id=key_id(api_key))) as s:
        admission = await s.admit(len(batch))  # quota and the POST's slot, stamped together
        s.accepted(admission)                  # answered: its stamps move to the answer time
        ticket = await s.request()             # every other request (the client does this)
        s.answered(ticket)

Every stamp is moved to the time its answer came (never earlier), which is never before the
server received the request: so the server, whatever the latency, never counts a request or a
batch later than our ledgers do. A process only ever moves or deletes its own stamps.

Time comes from a `Clock`: `SystemClock` in production, `VirtualClock` in tests, where hours of
schedule pass in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from .backends import open_ledgers
from .clock import Clock, SystemClock
from .config import ScheduleConfig, key_id

__all__ = ["Admission", "ScheduleConfig", "Scheduler", "key_id"]


@dataclass(frozen=True)
class Admission:
    """The stamps of one admitted POST: its emails' quota and its request slot."""

    emails: int
    usage_ticket: str | None
    request_ticket: str


class Scheduler:
    """Admits batches within the usage limit and requests within the rate limit.

    Per batch: `await admit(n)` takes the quota and the POST's request slot together, and
    `accepted` or `refund` closes it once answered; every other request takes
    `await request()` and `answered`. Use as a context manager, or call `close()`.

        with Scheduler(ScheduleConfig(usage_limit=Limit(1000, 3.0))) as s:
            await s.admit(1000)
            s.wait_for(1)   # 3.016: once the window (3 s + 15 ms margin) has passed
    """

    def __init__(self, config: ScheduleConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._ledgers = open_ledgers(config, self.clock)
        self._usage = self._ledgers.usage
        self._requests = self._ledgers.requests
        self._closed = False

    async def admit(self, emails: int) -> Admission:
        """Wait until `emails` more fit in the usage window and a request slot is free, then
        record both at the same instant; the POST must go out right after, without calling
        `request()` again.

        Recording them together matters: if the quota were stamped first and the POST then
        queued behind polls for a request slot, the server would see the batch later than our
        ledger does, and the next batch could land inside the server's window.

        Raises ValueError if `emails` is more than the usage-limit count: such a batch can
        never fit, so split it first.
        """
        self._check_batch(emails)
        while True:
            wait = max(self._usage.wait_for(emails), self._requests.wait_for(1))
            if wait > 0:
                await self.clock.sleep(wait)
                continue
            # Both fit now; another process may still win either race, so check each answer.
            request_ticket = self._requests.new_ticket()
            if self._requests.try_acquire(1, request_ticket) > 0:
                continue
            usage_ticket = self._usage.new_ticket() if emails else None
            if usage_ticket is not None and self._usage.try_acquire(emails, usage_ticket) > 0:
                continue  # the request slot is spent, which errs on the safe side
            return Admission(emails, usage_ticket, request_ticket)

    def accepted(self, admission: Admission) -> None:
        """The POST was answered, or its answer lost: its stamps move to now.

        `admit` stamped the batch before it left; the server received it a little later. The
        answer time is never earlier than the server's receipt, so moving the stamps there
        keeps the next batch out of the server's window whatever the network latency.
        """
        if admission.usage_ticket is not None:
            self._usage.restamp(admission.usage_ticket)
        self._requests.restamp(admission.request_ticket)

    def refund(self, admission: Admission) -> None:
        """The POST was refused with proof that nothing was accepted (a 4xx answer): its
        emails' quota is given back. The request slot was used, so it stays, moved to now."""
        if admission.usage_ticket is not None:
            self._usage.refund(admission.usage_ticket)
        self._requests.restamp(admission.request_ticket)

    async def request(self) -> str:
        """Wait for a request slot and record it. Call before every HTTP request; pass the
        ticket returned to `answered` once its answer (or failure) is in."""
        return await self._requests.acquire(1)

    def answered(self, ticket: str) -> None:
        """The request of `ticket` is over: its stamp moves to now (see `accepted`)."""
        self._requests.restamp(ticket)

    def pause_requests(self, seconds: float) -> None:
        """The server said 429 (rate): no request from any process on this key for `seconds`,
        at most one usage window (a bad Retry-After must not stop the key for a day)."""
        self._requests.pause(self._bounded_pause(seconds))

    def pause_submissions(self, seconds: float) -> None:
        """The server said 429 `usage_limit_exceeded`: no admit on this key for `seconds`,
        at most one usage window."""
        self._usage.pause(self._bounded_pause(seconds))

    def _bounded_pause(self, seconds: float) -> float:
        if not seconds > 0:
            return 0.0  # zero, negative or NaN: no pause
        limit = self.config.usage_limit
        return min(seconds, limit.period + self.config.margin_for(limit))

    def usage_in_window(self) -> int:
        """Emails recorded in the current usage window (window + margin), all processes."""
        return self._usage.in_window()

    def wait_for(self, emails: int) -> float:
        """Seconds until `emails` would be admitted (0: now), without recording anything."""
        self._check_batch(emails)
        return self._usage.wait_for(emails) if emails else self._usage.pause_left()

    def close(self) -> None:
        """Close the ledger file. The recorded entries stay for the next process."""
        if self._closed:
            return
        self._closed = True
        self._ledgers.close()

    def _check_batch(self, emails: int) -> None:
        limit = self.config.usage_limit
        if emails < 0:
            raise ValueError(f"cannot submit {emails} emails")
        if emails > limit.count:
            raise ValueError(
                f"a batch of {emails} emails can never fit the usage limit {limit}: "
                f"split it into batches of at most {limit.count}"
            )

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

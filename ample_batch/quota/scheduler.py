"""The scheduler: when may the next batch be submitted, and the next request be sent.

Two ledgers, both sliding-window logs (pyrate-limiter's `SlidingWindowLog`, exact):

- the usage ledger counts emails submitted, one entry per email (weight = batch size);
- the request ledger counts HTTP requests, every endpoint, polls and page fetches included.

With a `ledger_dir` both live in one SQLite file per API key, so every process and every cron
run on that key shares them and a restart remembers the last window. Each window is widened by
a small margin so that network latency cannot squeeze two windows' worth into one on the server.

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

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ..limits import Limit
from .clock import Clock, SystemClock
from .ledger import Ledger, connect

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def key_id(api_key: str) -> str:
    """A stable, non-secret name for an API key: its ledgers and state are filed under it.

    >>> key_id("secret-key")
    '3b9a1f953d75b2d6'
    """
    return hashlib.sha256(f"ample-batch:{api_key}".encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """The limits to keep and where their ledgers live."""

    usage_limit: Limit = Limit(15000, 3600.0)
    """Emails submitted per rolling window."""
    rate_limit: Limit = Limit(500, 60.0)
    """Requests per rolling window, all endpoints together."""
    ledger_dir: Path | None = None
    """Where the shared ledgers live; None keeps them in memory (one process only)."""
    key_id: str = "default"
    """Ledgers are per API key: `key_id(api_key)`, never the key itself."""
    margin: float | None = None
    """Seconds added to each window for network latency; None = 0.5% of the period, at most 2 s."""

    def __post_init__(self) -> None:
        for name, limit in (("usage_limit", self.usage_limit), ("rate_limit", self.rate_limit)):
            if limit.count < 1 or not limit.period > 0:
                raise ValueError(f"{name} must allow at least 1 per positive period, not {limit}")
        if self.margin is not None and not self.margin >= 0:
            raise ValueError(f"margin must be zero or more seconds, not {self.margin}")
        if not _KEY_ID.match(self.key_id):
            raise ValueError("key_id must be letters, digits, '-' or '_': use key_id(api_key)")

    def margin_for(self, limit: Limit) -> float:
        """The margin added to `limit`'s window, in seconds."""
        if self.margin is not None:
            return self.margin
        return min(0.005 * limit.period, 2.0)

    @property
    def ledger_path(self) -> Path | None:
        """The SQLite file holding this key's ledgers, if they are shared."""
        if self.ledger_dir is None:
            return None
        return self.ledger_dir / f"ledger-{self.key_id}.sqlite"


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
        path = config.ledger_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = None if path is None else connect(path)
        try:
            self._usage = Ledger(
                "usage",
                config.usage_limit,
                config.margin_for(config.usage_limit),
                self.clock,
                self._conn,
            )
            self._requests = Ledger(
                "requests",
                config.rate_limit,
                config.margin_for(config.rate_limit),
                self.clock,
                self._conn,
            )
        except BaseException:
            if self._conn is not None:
                self._conn.close()
            raise
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
        self._usage.close()
        self._requests.close()
        if self._conn is not None:
            self._conn.close()

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

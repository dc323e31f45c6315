"""A ledger: one limit kept over a `Bucket`, whichever backend stores it.

A `Ledger` is one limit: a sliding-window log (`bucket.Bucket`) plus a pause (the server's 429
`Retry-After`) and a clock-driven wait. It holds the logic that is the same for every backend:
tickets, waiting on our clock for what the bucket says, and deleting old entries on that clock
rather than on pyrate-limiter's background leaker thread. `backends.open_ledgers` picks the
bucket.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets

from .bucket import Bucket
from .clock import Clock

# Entries stay at least this long, even when this process's window is shorter: another process
# on the same key may run with a longer window and still be counting them.
_KEEP_MS = 3_600_000


_LEAK_EVERY_MS = 60_000


class Ledger:
    """One limit: at most `bucket.capacity` units in any window of `bucket.window_ms`.

    `clock` is what the ledger sleeps on; the bucket reads the same time.
    """

    def __init__(self, name: str, bucket: Bucket, clock: Clock) -> None:
        self.name = name
        self.bucket = bucket
        self.clock = clock
        self.capacity = bucket.capacity
        self.window_ms = bucket.window_ms
        self._last_leak_ms = 0
        # Tickets name this process's acquires; the token keeps them apart from other processes'.
        self._token = secrets.token_hex(8)
        self._tickets = itertools.count(1)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def new_ticket(self) -> str:
        """A name for one acquire's rows, unique to this process and acquire."""
        return f"{self.name}:{self._token}:{next(self._tickets)}"

    async def acquire(self, weight: int) -> str:
        """Wait until `weight` units fit (and no pause is on), then record them; returns the
        ticket that names them."""
        ticket = self.new_ticket()
        # One waiter at a time, first come first served; the others queue on the lock.
        async with self._async_lock():
            while (wait_ms := self.try_acquire(weight, ticket)) > 0:
                await self.clock.sleep(wait_ms / 1000)
        return ticket

    def try_acquire(self, weight: int, ticket: str | None = None) -> int:
        """Record `weight` units under `ticket` and return 0, or return the ms to wait before
        trying again."""
        now = self.bucket.now()
        paused = self.bucket.paused_until() - now
        if paused > 0:
            return paused
        if weight > 0:
            wait = self.bucket.try_acquire(ticket or self.new_ticket(), weight)
            if wait > 0:
                return wait
        if now - self._last_leak_ms >= _LEAK_EVERY_MS:
            self.bucket.forget_before(now - max(_KEEP_MS, self.window_ms))
            self._last_leak_ms = now
        return 0

    def wait_for(self, weight: int) -> float:
        """Seconds until `weight` units would fit, without recording them."""
        now = self.bucket.now()
        wait = self.bucket.paused_until() - now
        if self.in_window(now) + weight > self.capacity:
            # The entry whose expiry makes room, counted from the newest, as an acquire does.
            blocking = self.bucket.stamp_from_newest(self.capacity - weight)
            if blocking is not None:
                # +1: an entry stamped exactly `window_ms` ago still counts.
                wait = max(wait, blocking + self.window_ms - now + 1)
        return max(0, wait) / 1000

    def pause_left(self) -> float:
        """Seconds left of the current pause (0: none)."""
        return max(0, self.bucket.paused_until() - self.bucket.now()) / 1000

    def in_window(self, now: int | None = None) -> int:
        """Units recorded in the window ending now."""
        now = self.bucket.now() if now is None else now
        return self.bucket.in_window(now - self.window_ms)

    def restamp(self, ticket: str) -> None:
        """Move the entries of `ticket` (this process's) to now, never earlier: stamps only
        ever move later, so this never lets more through."""
        self.bucket.restamp_ticket(ticket, self.bucket.now())

    def refund(self, ticket: str) -> None:
        """Delete the entries of `ticket`: the units it recorded were never used."""
        self.bucket.refund_ticket(ticket)

    def pause(self, seconds: float) -> None:
        """Let no acquire through for `seconds` from now (extends, never shortens, a pause)."""
        if not seconds > 0 or math.isinf(seconds):
            return  # zero, negative, NaN; the scheduler bounds the rest
        self.bucket.pause_until(self.bucket.now() + math.ceil(seconds * 1000))

    def close(self) -> None:
        self.bucket.close()

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

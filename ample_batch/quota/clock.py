"""Time for the scheduler and the ledgers: the system clock, or a virtual one for tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

# Loop iterations a VirtualClock lets pass before it jumps to the next deadline, so a task just
# woken can reach its next sleep (through locks, futures, short chains of awaits) first.
_IDLE_HOPS = 8


class Clock(Protocol):
    """Where the scheduler reads the time and how it waits."""

    def now(self) -> float:
        """Wall-clock seconds, as `time.time()`: ledgers outlive processes, so not monotonic."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (zero or less: just yield to the event loop)."""
        ...


class SystemClock:
    """The real clock: `time.time()` and `asyncio.sleep()`."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock for tests: hours of schedule run in milliseconds.

    `sleep()` returns at once in real time, with `now()` moved on to the sleeper's deadline.
    Concurrent sleepers wake in deadline order and time only moves to the earliest pending
    deadline (they do not add up): each sleep yields to the event loop for a few iterations
    first, so tasks that are about to sleep get to register their deadlines. A task waiting on
    real I/O meanwhile does not hold virtual time back, so time may run ahead of what a real
    clock would show, never behind: a limit that holds in virtual time holds in real time.

        clock = VirtualClock()
        t0 = clock.now()
        await clock.sleep(3600)      # returns at once
        assert clock.now() == t0 + 3600
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._handle: asyncio.Handle | None = None
        self._handle_loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` now, waking the sleepers that are due."""
        self._now += max(0.0, seconds)
        self._wake_due()

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        if self._handle is None or self._handle_loop is not loop:
            self._schedule(loop, _IDLE_HOPS)
        await future

    def _schedule(self, loop: asyncio.AbstractEventLoop, hops: int) -> None:
        self._handle_loop = loop
        self._handle = loop.call_soon(self._step, loop, hops)

    def _step(self, loop: asyncio.AbstractEventLoop, hops: int) -> None:
        self._handle = None
        self._drop_gone()
        if not self._sleepers:
            return
        if hops > 0:
            self._schedule(loop, hops - 1)
            return
        self._now = max(self._now, self._sleepers[0][0])
        self._wake_due()
        if self._sleepers:
            self._schedule(loop, _IDLE_HOPS)

    def _drop_gone(self) -> None:
        while self._sleepers and (
            self._sleepers[0][2].done() or self._sleepers[0][2].get_loop().is_closed()
        ):
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done() and not future.get_loop().is_closed():
                future.set_result(None)

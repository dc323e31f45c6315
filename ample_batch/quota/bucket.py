"""The store behind a ledger: the `Bucket` protocol every backend implements, and the one in
memory.

A bucket is a sliding-window log of stamped entries (at most `capacity` in any `window_ms`) plus
a pause. Entries carry a ticket: the limits count every entry whatever its ticket, and the
ticket lets a process move (`restamp_ticket`) or delete (`refund_ticket`) exactly the entries
of one of its own acquires. `Ledger` holds the logic on top (waiting, tickets, pauses' bounds);
a backend only stores. The SQLite one is `sqlite_ledger.SQLiteLedgerBucket`.

The backends build on pyrate-limiter's buckets, which do the window's count-then-insert; two
things in pyrate-limiter 4.5.1 shape how:

- `put()` stamps nothing itself and `SQLiteBucket.now()` reads `time_ns()` whatever `_clock`
  says, so each bucket overrides `now()` with the injected clock and `put_or_wait` stamps the
  item from it, inside the bucket's lock.
- `Limiter`'s blocking acquire sleeps against `monotonic()` (plus a buffer per wait), which no
  injected clock can drive, and its non-blocking one is `put()` under the bucket's lock; so
  `put_or_wait` calls `put()` itself and `Ledger` sleeps on our clock for what it returns.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import attrgetter
from typing import Protocol, runtime_checkable

from pyrate_limiter import AbstractBucket, AbstractClock, InMemoryBucket, Rate, RateItem
from pyrate_limiter import SlidingWindowLog as _SlidingWindowLog

from .clock import Clock

ALGORITHM = _SlidingWindowLog()
"""Exact sliding windows: an entry counts while `stamp >= now - window_ms`."""


@runtime_checkable
class Bucket(Protocol):
    """Where one ledger's entries and pause live.

    Time: every stamp and every `now_ms` is epoch milliseconds from one time source, which
    `now()` reads. In-process and single-host stores read the injected `Clock` (wall-clock
    time, as entries outlive processes), never a clock of their own; a store shared by hosts
    may read its server's clock instead, as long as all its methods use that one.

    Atomicity: `try_acquire` is the only check-then-write. It must be one transaction that
    cannot interleave with another acquire on the same store, in this process or any other
    (SQLite: `BEGIN IMMEDIATE`); the other writes are single statements, and reads may see a
    slightly old state, which only ever makes `Ledger` wait a little longer or less.
    """

    @property
    def capacity(self) -> int:
        """The most entries any window may hold."""
        ...

    @property
    def window_ms(self) -> int:
        """The window's length: an entry stamped `t` counts until `t + window_ms`, inclusive."""
        ...

    def now(self) -> int:
        """The current time, epoch ms, from the store's time source."""
        ...

    def try_acquire(self, ticket: str, weight: int) -> int:
        """Admit `weight` (at least 1) entries now, or say when to try again.

        Atomically: stamp now (read inside the transaction), count the entries stamped at
        or after `now - window_ms`, and if `weight` more fit within `capacity`, record them under
        `ticket` and return 0; else record nothing and return the ms until they would fit
        (at least 1). Never admits more than `capacity` in a window, whoever else is acquiring.
        """
        ...

    def in_window(self, since_ms: int) -> int:
        """How many entries are stamped at or after `since_ms`, all tickets."""
        ...

    def stamp_from_newest(self, offset: int) -> int | None:
        """The stamp of the entry `offset` places from the newest (0: the newest), or None
        if there are not that many."""
        ...

    def restamp_ticket(self, ticket: str, now_ms: int) -> None:
        """Move every entry of `ticket` to `now_ms`, never earlier (a later stamp stays)."""
        ...

    def refund_ticket(self, ticket: str) -> None:
        """Delete every entry of `ticket`; no entry, no error."""
        ...

    def forget_before(self, stamp_ms: int) -> None:
        """Delete the entries stamped before `stamp_ms`, whichever process wrote them."""
        ...

    def paused_until(self) -> int:
        """The epoch ms before which no acquire may go through (0: no pause)."""
        ...

    def pause_until(self, until_ms: int) -> None:
        """Pause until `until_ms`; extends a pause, never shortens one."""
        ...

    def close(self) -> None:
        """Release what the bucket holds; what it recorded stays for the next process."""
        ...


class MsClock(AbstractClock):
    """pyrate-limiter's clock interface (integer epoch ms) over one of our clocks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> int:
        # Round to the microsecond first so virtual times like 3.0000000001 s do not lose a ms.
        return round(self.clock.now() * 1_000_000) // 1000


def put_or_wait(bucket: AbstractBucket, clock: MsClock, ticket: str, weight: int) -> int:
    """`Bucket.try_acquire` over a pyrate-limiter bucket whose time is `clock`: call it
    holding the bucket's lock, so that the stamp is read inside the transaction."""
    admitted = bucket.put(RateItem(ticket, clock.now(), weight))
    assert isinstance(admitted, bool)  # a sync bucket never answers with an awaitable
    if admitted:
        return 0
    # The failed put() recorded when this weight fits; waiting() reads it back.
    wait = bucket.waiting(RateItem(ticket, clock.now(), weight))
    assert isinstance(wait, int) and wait >= 0, wait
    return max(wait, 1)


class MemoryBucket(InMemoryBucket):
    """A ledger private to this process."""

    def __init__(self, capacity: int, window_ms: int, clock: Clock) -> None:
        super().__init__([Rate(capacity, window_ms)], algorithm=ALGORITHM)
        self.capacity = capacity
        self.window_ms = window_ms
        self._clock = self._ms_clock = MsClock(clock)
        self._paused_until = 0

    def now(self) -> int:
        return self._ms_clock.now()

    def try_acquire(self, ticket: str, weight: int) -> int:
        with self._lock:
            return put_or_wait(self, self._ms_clock, ticket, weight)

    def in_window(self, since_ms: int) -> int:
        with self._lock:
            return len(self.items) - bisect_left(self.items, since_ms, key=attrgetter("timestamp"))

    def stamp_from_newest(self, offset: int) -> int | None:
        item = self.peek(offset)
        return None if item is None else int(item.timestamp)

    def restamp_ticket(self, ticket: str, now_ms: int) -> None:
        with self._lock:
            mine = [i for i, item in enumerate(self.items) if item.name == ticket]
            if not mine:
                return
            # Entries of one put() share a RateItem: replace them, do not mutate.
            stamp = max(now_ms, self.items[mine[-1]].timestamp)
            moved = RateItem(ticket, stamp, weight=len(mine))
            rest = [item for item in self.items if item.name != ticket]
            # The log stays sorted by timestamp: the moved entries go after every earlier one.
            at = bisect_left(rest, stamp + 1, key=attrgetter("timestamp"))
            self.items = [*rest[:at], *[moved] * len(mine), *rest[at:]]

    def refund_ticket(self, ticket: str) -> None:
        with self._lock:
            self.items = [item for item in self.items if item.name != ticket]

    def forget_before(self, stamp_ms: int) -> None:
        # leak() drops the entries older than one window before the time it is given.
        self.leak(stamp_ms + self.window_ms)

    def paused_until(self) -> int:
        return self._paused_until

    def pause_until(self, until_ms: int) -> None:
        self._paused_until = max(self._paused_until, until_ms)

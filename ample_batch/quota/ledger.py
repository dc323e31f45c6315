"""The scheduler's ledgers: pyrate-limiter sliding-window logs, in memory or in SQLite.

Part of the schedule stage; only `schedule.py` uses it. A `Ledger` is one limit: a
pyrate-limiter `Limiter` over one bucket, plus a pause (the server's 429 `Retry-After`) and a
clock-driven wait. Shared ledgers are tables in one SQLite file per API key:

    usage     (name, item_timestamp)  one row per email submitted, epoch ms
    requests  (name, item_timestamp)  one row per HTTP request
    pauses    (ledger, until_ms)      no acquire on `ledger` before `until_ms`

Each acquire's rows carry a ticket as their `name`: the ledger, a token drawn by this process
and a sequence number. The limits count every row whatever its name; the ticket lets a process
move (`restamp`) or delete (`refund`) exactly the rows of one of its own acquires, never
another process's.

Three things in pyrate-limiter 4.5.1 shape this module:

- `SQLiteBucket.now()` reads `time_ns()` and ignores the bucket's `_clock`, so an injected clock
  would be silently bypassed; the subclass below restores the base class's behaviour.
- `Limiter`'s blocking acquire sleeps with `asyncio.sleep`/`time.sleep` against `monotonic()`
  (plus a 50 ms buffer per wait), which no injected clock can drive. So `Ledger.acquire` makes
  non-blocking attempts and sleeps on our clock for exactly what `bucket.waiting()` reports.
- `init_from_file(use_file_lock=True)` needs the `filelock` package, which is not a dependency
  (it is pyrate-limiter's `filelock` extra), and polls its lock every 50 ms with the event loop
  blocked. SQLite already has the lock we need: `_WriteLock` makes each bucket operation one
  `BEGIN IMMEDIATE` transaction, so a count-then-insert is atomic across processes.

The background leaker thread is not used either; `Ledger` deletes old rows itself, on its clock.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import sqlite3
import threading
from bisect import bisect_left
from operator import attrgetter
from pathlib import Path
from types import TracebackType

from pyrate_limiter import (
    AbstractClock,
    InMemoryBucket,
    Limiter,
    Rate,
    RateItem,
    SingleBucketFactory,
    SlidingWindowLog,
    SQLiteBucket,
    SQLiteQueries,
)

from ..limits import Limit
from .clock import Clock

# Rows stay at least this long, even when this process's window is shorter: another process on
# the same key may run with a longer window and still be counting them.
_KEEP_MS = 3_600_000


_LEAK_EVERY_MS = 60_000


# How long a process waits for another one's transaction before giving up (they take ~1 ms).
_BUSY_TIMEOUT = 60.0


_ALGORITHM = SlidingWindowLog()


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if need be) the ledger file at `path`, shared by both ledgers."""
    # Autocommit: the only transactions are the explicit ones `_WriteLock` opens.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # A killed process loses nothing committed; only an OS crash may lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pauses (ledger TEXT PRIMARY KEY, until_ms INTEGER NOT NULL)"
        )
    except BaseException:
        conn.close()
        raise
    return conn


class _MsClock(AbstractClock):
    """pyrate-limiter's clock interface (integer epoch ms) over one of our clocks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> int:
        # Round to the microsecond first so virtual times like 3.0000000001 s do not lose a ms.
        return round(self.clock.now() * 1_000_000) // 1000


class _WriteLock:
    """SQLite's write lock, used as a pyrate-limiter bucket lock: reentrant, thread-safe.

    The outermost acquire opens `BEGIN IMMEDIATE`, which waits for any other process's write
    transaction; the outermost release commits (rolls back on error). `SQLiteBucket.put()`
    commits itself after its insert, which is its last statement, so that is harmless.
    Never hold two ledger files' locks at once in one thread.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._thread_lock = threading.RLock()
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._thread_lock.acquire(blocking, timeout):
            return False
        if self._depth == 0:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return True

    def release(self, ok: bool = True) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._conn.in_transaction:
                if ok:
                    self._conn.commit()
                else:
                    self._conn.rollback()
        finally:
            self._thread_lock.release()

    def __enter__(self) -> _WriteLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release(ok=exc_type is None)


class _MemoryBucket(InMemoryBucket):
    """A ledger private to this process."""

    def __init__(self, rate: Rate, clock: _MsClock) -> None:
        super().__init__([rate], algorithm=_ALGORITHM)
        self._clock = self._ms_clock = clock
        self._paused_until = 0

    def now(self) -> int:
        return self._ms_clock.now()

    def in_window(self, since_ms: int) -> int:
        with self._lock:
            return len(self.items) - bisect_left(self.items, since_ms, key=attrgetter("timestamp"))

    def paused_until(self) -> int:
        return self._paused_until

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

    def pause_until(self, until_ms: int) -> None:
        self._paused_until = max(self._paused_until, until_ms)


class _SharedBucket(SQLiteBucket):
    """A ledger table in the key's SQLite file, shared by every process using the key."""

    def __init__(self, rate: Rate, conn: sqlite3.Connection, table: str, clock: _MsClock) -> None:
        super().__init__([rate], conn, table, lock=_WriteLock(conn), algorithm=_ALGORITHM)
        self._clock = self._ms_clock = clock
        with self.lock:
            conn.execute(SQLiteQueries.CREATE_BUCKET_TABLE.format(table=table))
            conn.execute(
                SQLiteQueries.CREATE_INDEX_ON_TIMESTAMP.format(
                    index_name=f"idx_{table}_rate_item_timestamp", table_name=table
                )
            )
            conn.execute(f'CREATE INDEX IF NOT EXISTS "idx_{table}_name" ON "{table}" (name)')

    def now(self) -> int:
        # SQLiteBucket.now() returns time_ns() whatever `_clock` says; use the injected clock.
        return self._ms_clock.now()

    def in_window(self, since_ms: int) -> int:
        row = self.conn.execute(
            f'SELECT COUNT(*) FROM "{self.table}" WHERE item_timestamp >= ?', (since_ms,)
        ).fetchone()
        return int(row[0])

    def restamp_ticket(self, ticket: str, now_ms: int) -> None:
        with self.lock:
            self.conn.execute(
                f'UPDATE "{self.table}" SET item_timestamp = MAX(item_timestamp, ?) WHERE name = ?',
                (now_ms, ticket),
            )

    def refund_ticket(self, ticket: str) -> None:
        with self.lock:
            self.conn.execute(f'DELETE FROM "{self.table}" WHERE name = ?', (ticket,))

    def paused_until(self) -> int:
        row = self.conn.execute(
            "SELECT until_ms FROM pauses WHERE ledger = ?", (self.table,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def pause_until(self, until_ms: int) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO pauses (ledger, until_ms) VALUES (?, ?) ON CONFLICT (ledger) "
                "DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                (self.table, until_ms),
            )

    def close(self) -> None:
        # The connection is shared by both ledgers; the Scheduler that opened it closes it.
        pass


class Ledger:
    """One limit: at most `limit.count` units in any window of `limit.period` + `margin` s."""

    def __init__(
        self,
        name: str,
        limit: Limit,
        margin: float,
        clock: Clock,
        conn: sqlite3.Connection | None,
    ) -> None:
        self.name = name
        self.limit = limit
        self.clock = clock
        self.window_ms = math.ceil(round((limit.period + margin) * 1000, 6))
        self.rate = Rate(limit.count, self.window_ms)
        ms_clock = _MsClock(clock)
        self.bucket: _MemoryBucket | _SharedBucket = (
            _MemoryBucket(self.rate, ms_clock)
            if conn is None
            else _SharedBucket(self.rate, conn, name, ms_clock)
        )
        # No background leaker thread: see the module docstring.
        self.limiter = Limiter(SingleBucketFactory(self.bucket, schedule_leak=False), buffer_ms=0)
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
        name = ticket or self.new_ticket()
        admitted = self.limiter.try_acquire(name, weight, blocking=False)
        assert isinstance(admitted, bool)  # a sync bucket never answers with an awaitable
        if admitted:
            if now - self._last_leak_ms >= _LEAK_EVERY_MS:
                # leak() drops rows older than one window before the timestamp it is given.
                self.bucket.leak(now - max(0, _KEEP_MS - self.window_ms))
                self._last_leak_ms = now
            return 0
        # The failed put() recorded when this weight fits; waiting() reads it back.
        wait = self.bucket.waiting(RateItem(self.name, self.bucket.now(), weight))
        assert isinstance(wait, int) and wait >= 0, wait
        return max(wait, 1)

    def wait_for(self, weight: int) -> float:
        """Seconds until `weight` units would fit, without recording them."""
        now = self.bucket.now()
        wait = self.bucket.paused_until() - now
        if self.in_window(now) + weight > self.limit.count:
            # The entry whose expiry makes room, counted from the newest, as put() does.
            offset = _ALGORITHM.blocking_offset(self.rate, weight)
            blocking = None if offset is None else self.bucket.peek(offset)
            if blocking is not None:
                ready = _ALGORITHM.retry_after(self.rate, now, blocking.timestamp)
                wait = max(wait, ready)
        return max(0, wait) / 1000

    def pause_left(self) -> float:
        """Seconds left of the current pause (0: none)."""
        return max(0, self.bucket.paused_until() - self.bucket.now()) / 1000

    def in_window(self, now: int | None = None) -> int:
        """Units recorded in the window ending now."""
        now = self.bucket.now() if now is None else now
        return self.bucket.in_window(_ALGORITHM.window_start(self.rate, now))

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
        self.limiter.close()

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

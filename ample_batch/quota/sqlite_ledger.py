"""The ledgers in SQLite: one file per API key, shared by every process using the key.

Every SQL statement on a ledger file is in this module, and each method that reaches the
file turns sqlite3's errors into ours (`sqlite_errors.translated`, naming the file): a ledger
locked past the busy timeout is StateUnavailable (exit 75) at an admission as at the open, a
corrupt one StateUnusable (exit 2). The file holds:

    usage     (name, item_timestamp)  one row per email submitted, epoch ms
    requests  (name, item_timestamp)  one row per HTTP request
    pauses    (ledger, until_ms)      no acquire on `ledger` before `until_ms`

Each acquire's rows carry its ticket as their `name` (see `bucket.Bucket`).

`SQLiteBucket.init_from_file(use_file_lock=True)` would need the `filelock` package, which is
not a dependency (it is pyrate-limiter's `filelock` extra), and polls its lock with the event
loop blocked. SQLite already has the lock we need: `_WriteLock` makes each bucket operation one
`BEGIN IMMEDIATE` transaction, so a count-then-insert is atomic across processes.

    ledgers = SQLiteLedgerFile(state_dir / "ledger-<key id>.sqlite")
    usage = ledgers.bucket("usage", 15000, 3_602_000, SystemClock())
    ...
    ledgers.close()
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from types import TracebackType

from pyrate_limiter import Rate, SQLiteBucket, SQLiteQueries

from ..sqlite_errors import translated
from ..sqlite_wal import enable_wal
from .bucket import ALGORITHM, MsClock, put_or_wait
from .clock import Clock

BUSY_TIMEOUT = 60.0
"""Seconds a process waits for another one's transaction before giving up: they are short,
so a wait this long means a stuck process, not a busy one."""


# A read-only look (`shows_spend`) gives up sooner: it only guards a rare mistake.
_READ_TIMEOUT = 5.0


class SQLiteLedgerFile:
    """One API key's ledger file: opened on first use, created (with its directory) if need
    be; its buckets share the connection, which `close()` closes. `timeout` is how long an
    operation waits for another process's transaction (None: `BUSY_TIMEOUT`)."""

    def __init__(self, path: Path, *, timeout: float | None = None) -> None:
        self.path = path
        # Read at open, not import: a test shortens BUSY_TIMEOUT for a whole process.
        self.timeout = BUSY_TIMEOUT if timeout is None else timeout
        self._conn: sqlite3.Connection | None = None

    def bucket(self, table: str, capacity: int, window_ms: int, clock: Clock) -> SQLiteLedgerBucket:
        """The ledger `table` of this file (created if need be) as a `Bucket`."""
        with translated(self.path):
            conn = self._connection()
            return SQLiteLedgerBucket(conn, self.path, table, capacity, window_ms, clock)

    def shows_spend(self) -> bool:
        """Whether the file records emails submitted; read-only, never creates anything.

        A file that cannot be read answers yes: it cannot prove that nothing was spent.
        """
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=_READ_TIMEOUT)
        except sqlite3.Error:
            return True
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if "usage" not in tables:
                return False
            count: int = db.execute('SELECT COUNT(*) FROM "usage"').fetchone()[0]
            return count > 0
        except sqlite3.Error:
            return True
        finally:
            db.close()

    def close(self) -> None:
        """Close the file. The recorded entries stay for the next process."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with translated(self.path):
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.path, self.timeout)
        return self._conn


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    # Autocommit: the only transactions are the explicit ones `_WriteLock` opens.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        enable_wal(conn, timeout=timeout)
        # A killed process loses nothing committed; only an OS crash may lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pauses (ledger TEXT PRIMARY KEY, until_ms INTEGER NOT NULL)"
        )
    except BaseException:
        conn.close()
        raise
    return conn


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
                if not ok:
                    self._conn.rollback()
                    return
                try:
                    self._conn.commit()
                except BaseException:
                    # A failed COMMIT leaves the transaction open: end it, so that the next
                    # acquire can begin one.
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.rollback()
                    raise
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


class SQLiteLedgerBucket(SQLiteBucket):
    """A ledger table in the key's SQLite file (`path`, open as `conn`), shared by every
    process using the key. Its methods raise sqlite3's errors as ours, naming `path`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        table: str,
        capacity: int,
        window_ms: int,
        clock: Clock,
    ) -> None:
        self.path = path
        rate = Rate(capacity, window_ms)
        super().__init__([rate], conn, table, lock=_WriteLock(conn), algorithm=ALGORITHM)
        self.capacity = capacity
        self.window_ms = window_ms
        self._clock = self._ms_clock = MsClock(clock)
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

    def try_acquire(self, ticket: str, weight: int) -> int:
        with translated(self.path), self.lock:
            return put_or_wait(self, self._ms_clock, ticket, weight)

    def in_window(self, since_ms: int) -> int:
        with translated(self.path):
            row = self.conn.execute(
                f'SELECT COUNT(*) FROM "{self.table}" WHERE item_timestamp >= ?', (since_ms,)
            ).fetchone()
        return int(row[0])

    def stamp_from_newest(self, offset: int) -> int | None:
        with translated(self.path):
            item = self.peek(offset)
        return None if item is None else int(item.timestamp)

    def restamp_ticket(self, ticket: str, now_ms: int) -> None:
        with translated(self.path), self.lock:
            self.conn.execute(
                f'UPDATE "{self.table}" SET item_timestamp = MAX(item_timestamp, ?) WHERE name = ?',
                (now_ms, ticket),
            )

    def refund_ticket(self, ticket: str) -> None:
        with translated(self.path), self.lock:
            self.conn.execute(f'DELETE FROM "{self.table}" WHERE name = ?', (ticket,))

    def forget_before(self, stamp_ms: int) -> None:
        # leak() drops the rows older than one window before the time it is given.
        with translated(self.path):
            self.leak(stamp_ms + self.window_ms)

    def paused_until(self) -> int:
        with translated(self.path):
            row = self.conn.execute(
                "SELECT until_ms FROM pauses WHERE ledger = ?", (self.table,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def pause_until(self, until_ms: int) -> None:
        with translated(self.path), self.lock:
            self.conn.execute(
                "INSERT INTO pauses (ledger, until_ms) VALUES (?, ?) ON CONFLICT (ledger) "
                "DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                (self.table, until_ms),
            )

    def close(self) -> None:
        # The connection is shared by the file's buckets; `SQLiteLedgerFile.close` closes it.
        pass

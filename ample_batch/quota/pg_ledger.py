"""The ledgers in PostgreSQL: one database shared by every host on an API key.

Every SQL statement on the ledger tables (`pg_schema` migration 1) is in this module:

    ledgers         (key_id, ledger, paused_until_ms)  one row per key and ledger: the lock
                                                       an admission holds, and its 429 pause
    ledger_entries  (key_id, ledger, ticket, weight, stamp_ms)  one row per acquire

Time is the database server's (`pg_schema.NOW_MS`), never a host's: hosts' clocks disagree,
and host-clock stamps let a skewed host overfill a shared sliding window (measured: see
docs/design-measurements.md, "State"), while every host reads the one server clock. `now()`
asks the server too, so `Ledger`, which sleeps on the host's clock for the durations the
bucket gives, waits right however skewed that host is.

An admission is one transaction holding the key's ledger row (`SELECT ... FOR UPDATE`): the
count of the window and the insert cannot interleave with another host's, so no rolling window
ever holds more than the capacity, whatever the number of hosts.

    ledgers = PgLedgers("postgresql://ana@db/leads", key_id="3b9a1f953d75b2d6")
    usage = ledgers.bucket("usage", 15000, 3_618_000)
    usage.try_acquire("usage:me:1", 1000)   # 0: admitted
    ledgers.close()
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .. import pg
from ..errors import StateUnavailable
from ..pg_schema import NOW_MS

if TYPE_CHECKING:
    from ..pg import Connection

T = TypeVar("T")

RECONNECT_DELAYS = (0.2, 1.0, 3.0)
"""Seconds between reconnection attempts after a lost connection, before StateUnavailable:
a server restart or a failover usually takes a few seconds."""


class PgLedgers:
    """One API key's ledgers in the state database: one connection, shared by its buckets,
    opened (and the schema migrated) at once, reopened if it is lost; `close()` closes it."""

    def __init__(self, url: str, *, key_id: str, schema: str = pg.DEFAULT_SCHEMA) -> None:
        self.url = url
        self.schema = schema
        self.key_id = key_id
        self._conn: Connection | None = pg.connect(url, schema=schema)

    def bucket(self, ledger: str, capacity: int, window_ms: int) -> PgLedgerBucket:
        """The ledger `ledger` of this key (its row created if need be) as a `Bucket`."""
        bucket = PgLedgerBucket(self, ledger, capacity, window_ms)
        self.run(
            lambda conn: conn.execute(
                "INSERT INTO ledgers (key_id, ledger) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (self.key_id, ledger),
            )
        )
        return bucket

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)`, with psycopg's errors as ours; a lost connection is reopened and
        `work` run again (each is one statement or one transaction, so a retry at worst
        counts an acquire twice, which errs on the safe side)."""
        delays = iter(RECONNECT_DELAYS)
        while True:
            try:
                with pg.translated(self.url):
                    return work(self._connection())
            except StateUnavailable:
                if self._conn is not None and not self._conn.broken:
                    raise  # a passing error on a live connection: the caller decides
                self._drop()
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)

    def close(self) -> None:
        """Close the connection. The recorded entries stay for the next process and host."""
        self._drop()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = pg.connect(self.url, schema=self.schema)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class PgLedgerBucket:
    """A key's ledger in PostgreSQL, shared by every process and host using the key."""

    def __init__(self, ledgers: PgLedgers, ledger: str, capacity: int, window_ms: int) -> None:
        self._ledgers = ledgers
        self._ledger = ledger
        self._key = (ledgers.key_id, ledger)
        self.capacity = capacity
        self.window_ms = window_ms

    def now(self) -> int:
        return self._value(f"SELECT {NOW_MS}", ())

    def try_acquire(self, ticket: str, weight: int) -> int:
        def admit(conn: Connection) -> int:
            with conn.transaction():
                # The row lock first, then the time: a host that waited for the lock must
                # not stamp with the time it started waiting.
                conn.execute(
                    "SELECT 1 FROM ledgers WHERE key_id = %s AND ledger = %s FOR UPDATE",
                    self._key,
                )
                # Retried after a lost answer to a COMMIT that did land: admitted already.
                done = conn.execute(
                    "SELECT 1 FROM ledger_entries WHERE key_id = %s AND ticket = %s",
                    (self._key[0], ticket),
                ).fetchone()
                if done is not None:
                    return 0
                now = _scalar(conn, f"SELECT {NOW_MS}", ())
                held = _scalar(conn, *self._in_window_query(now - self.window_ms))
                if held + weight <= self.capacity:
                    conn.execute(
                        "INSERT INTO ledger_entries (key_id, ledger, ticket, weight, stamp_ms)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (*self._key, ticket, weight, now),
                    )
                    return 0
                blocking = self._stamp_from_newest(conn, self.capacity - weight)
                # +1: an entry stamped exactly `window_ms` ago still counts.
                return 1 if blocking is None else max(1, blocking + self.window_ms - now + 1)

        return self._ledgers.run(admit)

    def in_window(self, since_ms: int) -> int:
        return self._value(*self._in_window_query(since_ms))

    def stamp_from_newest(self, offset: int) -> int | None:
        return self._ledgers.run(lambda conn: self._stamp_from_newest(conn, offset))

    def restamp_ticket(self, ticket: str, now_ms: int) -> None:
        self._execute(
            "UPDATE ledger_entries SET stamp_ms = greatest(stamp_ms, %s)"
            " WHERE key_id = %s AND ledger = %s AND ticket = %s",
            (now_ms, *self._key, ticket),
        )

    def refund_ticket(self, ticket: str) -> None:
        self._execute(
            "DELETE FROM ledger_entries WHERE key_id = %s AND ledger = %s AND ticket = %s",
            (*self._key, ticket),
        )

    def forget_before(self, stamp_ms: int) -> None:
        self._execute(
            "DELETE FROM ledger_entries WHERE key_id = %s AND ledger = %s AND stamp_ms < %s",
            (*self._key, stamp_ms),
        )

    def paused_until(self) -> int:
        return self._value(
            "SELECT coalesce(max(paused_until_ms), 0) FROM ledgers"
            " WHERE key_id = %s AND ledger = %s",
            self._key,
        )

    def pause_until(self, until_ms: int) -> None:
        self._execute(
            "UPDATE ledgers SET paused_until_ms = greatest(paused_until_ms, %s)"
            " WHERE key_id = %s AND ledger = %s",
            (until_ms, *self._key),
        )

    def close(self) -> None:
        # The connection is shared by the key's buckets; `PgLedgers.close` closes it.
        pass

    def entries(self) -> Iterator[tuple[int, int]]:
        """Every entry as (stamp ms, weight), oldest first: for tests and diagnostics."""
        rows = self._ledgers.run(
            lambda conn: conn.execute(
                "SELECT stamp_ms, weight FROM ledger_entries WHERE key_id = %s AND ledger = %s"
                " ORDER BY stamp_ms",
                self._key,
            ).fetchall()
        )
        return iter([(int(stamp), int(weight)) for stamp, weight in rows])

    def _in_window_query(self, since_ms: int) -> tuple[str, tuple[Any, ...]]:
        return (
            "SELECT coalesce(sum(weight), 0) FROM ledger_entries"
            " WHERE key_id = %s AND ledger = %s AND stamp_ms >= %s",
            (*self._key, since_ms),
        )

    def _stamp_from_newest(self, conn: Connection, offset: int) -> int | None:
        # Units counted newest first: the entry holding unit number `offset` (from 0).
        row = conn.execute(
            "SELECT stamp_ms FROM (SELECT stamp_ms, sum(weight) OVER (ORDER BY stamp_ms DESC,"
            " ticket ROWS UNBOUNDED PRECEDING) AS units FROM ledger_entries"
            " WHERE key_id = %s AND ledger = %s) AS newest_first"
            " WHERE units > %s ORDER BY units LIMIT 1",
            (*self._key, offset),
        ).fetchone()
        return None if row is None else int(row[0])

    def _value(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._ledgers.run(lambda conn: _scalar(conn, sql, params))

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self._ledgers.run(lambda conn: conn.execute(sql, params))


def _scalar(conn: Connection, sql: str, params: tuple[Any, ...]) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None  # every query here is an aggregate or a bare expression
    return int(row[0])

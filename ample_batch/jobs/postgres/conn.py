"""The PostgreSQL job store's connection: every statement through one of three doors (a read,
a write transaction, a stream), each translating psycopg's errors (`pg.translated`) and
retrying what a lost connection interrupted.

What is retried, and when (the lost connection is reopened first):

- **Reads** (one statement each): always; they change nothing.
- **Write transactions** that failed *before* their COMMIT was sent: always, since the server
  rolled them back. A COMMIT whose answer was lost may or may not have landed: only the
  transactions marked `idempotent` (running them twice is running them once) are retried
  then; the others raise StateUnavailable (exit 75) and the next run resumes from whichever
  state the database holds, as after a kill.
- **Serialisation failures and deadlocks** (SQLSTATE class 40): rolled back by the server,
  so retried like a failure before COMMIT.
- **Streams** (server-side cursors, on a connection of their own): opening one is retried;
  a stream lost midway raises StateUnavailable (its reader cannot be given rows twice).

Between attempts the waits are `RECONNECT_WAITS` (about 5 s in all); then StateUnavailable,
whose message shows the URL without its password.

Write transactions whose rows other jobs' claims read (batches' states and emails, the
cache, the jobs' API identity) take one transaction-level advisory lock per schema first: like
SQLite's `BEGIN IMMEDIATE`, they run one at a time, so two hosts never both buy one email (see
protocol.py). The rest (planning's bulk inserts, a job's stats, poll times and failure counts)
skip it, so they never wait for another host's claim.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ... import pg
from ...errors import StateUnavailable

if TYPE_CHECKING:
    import psycopg

    from ...pg import Connection

T = TypeVar("T")

RECONNECT_WAITS: tuple[float, ...] = (0.1, 0.4, 1.5, 3.0)
"""Seconds to wait before each new attempt after a lost connection; then StateUnavailable."""

STREAM_ROWS = 10_000
"""Rows a server-side cursor fetches per round trip."""

_stream_names = itertools.count(1)


def by_name(db: Connection) -> psycopg.Cursor[dict[str, Any]]:
    """A cursor on `db` whose rows are read by column name: for a read of several columns,
    which a change of the SELECT's order must not mix up.

        row = by_name(db).execute("SELECT 1 AS one, 2 AS two").fetchone()  # row["two"] == 2
    """
    from psycopg.rows import dict_row

    return db.cursor(row_factory=dict_row)


class PgConnection:
    """One session with the state database, reopened when it is lost.

    conn = PgConnection("postgresql://ana@db.example/leads")
    (count,) = conn.read(lambda db: db.execute("SELECT count(*) FROM jobs").fetchone())
    conn.write(lambda db: db.execute("UPDATE jobs SET state = 'done'"), idempotent=True)
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = pg.DEFAULT_SCHEMA,
        retry_waits: Sequence[float] = RECONNECT_WAITS,
    ) -> None:
        self.url = url
        self.schema = schema
        self.where = pg.redacted(url)
        self._waits = tuple(retry_waits)
        self._write_lock = pg.advisory_key("store", schema)
        self._conn: Connection | None = pg.connect(url, schema=schema)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        if self._conn is None:
            self._conn = pg.connect(self.url, schema=self.schema, migrate=False)
        return self._conn

    def _lost(self, exc: StateUnavailable) -> bool:
        """Whether `exc` is worth another attempt: the session is gone, or the server rolled
        the transaction back to resolve a conflict."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            return True
        code = getattr(exc.__cause__, "sqlstate", None) or ""
        return code.startswith("40")

    def _attempts(self, action: Callable[[Connection, list[bool]], T], idempotent: bool) -> T:
        waits = iter(self._waits)
        while True:
            committing = [False]
            try:
                with pg.translated(self.url):
                    return action(self._connection(), committing)
            except StateUnavailable as exc:
                unknown_outcome = committing[0] and not idempotent
                wait = next(waits, None)
                if wait is None or unknown_outcome or not self._lost(exc):
                    raise
            time.sleep(wait)

    # -- the three doors -------------------------------------------------------------------

    def read(self, query: Callable[[Connection], T]) -> T:
        """Run a read (retried whenever the connection is lost)."""
        return self._attempts(lambda conn, _committing: query(conn), idempotent=True)

    def write(
        self,
        work: Callable[[Connection], T],
        *,
        idempotent: bool = False,
        durable: bool = False,
        serialised: bool = True,
        pipelined: bool = False,
    ) -> T:
        """Run `work` in one transaction, retried as the module docstring says.

        `durable`: the commit waits for the server's disk whatever the server's default
        (`synchronous_commit = on`). `serialised`: take the schema's write lock first.
        `pipelined`: send every statement without waiting for the one before (psycopg's
        pipeline mode), one round trip in all, for work that reads no result back.
        """

        def attempt(conn: Connection, committing: list[bool]) -> T:
            with contextlib.ExitStack() as stack:
                if pipelined:
                    stack.enter_context(conn.pipeline())
                stack.enter_context(conn.transaction())
                if serialised:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._write_lock,))
                if durable:
                    conn.execute("SET LOCAL synchronous_commit = on")
                result = work(conn)
                committing[0] = True
            return result

        return self._attempts(attempt, idempotent)

    def stream(self, query: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of `query`, streamed from a server-side cursor on a connection of its own:
        the store's own connection stays free for writes while the stream is read."""
        with pg.translated(self.url):
            yield from self._stream(query, params)

    def _stream(self, query: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        waits = iter(self._waits)
        while True:
            try:
                own = pg.connect(self.url, schema=self.schema, migrate=False)
                break
            except StateUnavailable:
                wait = next(waits, None)
                if wait is None:
                    raise
            time.sleep(wait)
        try:
            with own.transaction():
                cursor = own.cursor(name=f"ample_batch_stream_{next(_stream_names)}")
                cursor.itersize = STREAM_ROWS
                cursor.execute(query, params)
                yield from cursor
        finally:
            own.close()

"""Job locks in PostgreSQL: session-level advisory locks, one key per job and schema.

A run holds its job's lock on a connection of its own, whose `application_name` records who
it is (`ample-batch <pid> run|follow <host>`): `holder` reads it back through `pg_locks` and
`pg_stat_activity`, so `status` and `cancel` on any host can say which host runs a job. A
host that dies (kill -9, a lost network) loses its connection, and the server frees the lock
with it: another host takes the job over.

A run's claims are fenced by its lock (`fence`): each `mark_submitting` checks, in its own
transaction, that the run's lock session still holds the lock, so a run whose lock connection
died while another host took the job buys nothing more (exit 75), not even until its cancel
watcher's next look. A lock lost with its connection that nobody took is taken again between
two tries of the claim, never inside one: reconnecting inside it would keep every other host's
claims waiting on the schema's write lock.

A cancel request is an advisory lock too (another key per job), held by `cancel` while it
waits for the run to stop: a run that sees it held was asked to cancel, and a `cancel` that
dies leaves no stale request behind. Nothing needs a table, so nothing needs a migration.

    locks = PgLocks("postgresql://ana@db/leads")
    with job_lock(locks, job_id):
        ...
    locks.close()
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ... import pg
from ...errors import AmpleBatchError, JobLockLost
from ..locks import Holder, this_host
from .conn import by_name

if TYPE_CHECKING:
    from ...pg import Connection

_TAG = "ample-batch"
_NAME_BYTES = 63  # PostgreSQL keeps at most NAMEDATALEN - 1 bytes of application_name

LOCK_LOST = "lost the job's lock to another run (its connection to the state database dropped)"
"""Why a run stops when another run took its job's lock: its stop reason and message."""

# Whether the session `pid`, started at `backend_start`, holds the advisory lock of a key
# (classid and objid are the key's 32-bit halves; objsubid 1 marks a bigint key). The start
# time keeps a server process id reused by another session from passing for ours.
_HELD_BY = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid::bigint = %s AND l.objid::bigint = %s"
    " AND l.pid = %s AND a.backend_start = %s)"
)


@dataclass(frozen=True)
class _Session:
    """The server session holding a run's lock, as `pg_locks` and `pg_stat_activity` name it."""

    pid: int
    started: datetime


def holder_name(pid: int, host: str, *, following: bool) -> str:
    """The `application_name` of a lock's connection: who holds it, cut to what the server
    keeps.

    >>> holder_name(4242, "batch-7f9c", following=False)
    'ample-batch 4242 run batch-7f9c'
    """
    name = f"{_TAG} {pid} {'follow' if following else 'run'} {host}"
    return name.encode()[:_NAME_BYTES].decode(errors="ignore")


def parse_holder(name: str | None) -> Holder:
    """The Holder an `application_name` records; pid 0 and host '?' where it cannot tell
    (a connection of another database user, whose name the server hides).

    >>> parse_holder("ample-batch 4242 follow batch-7f9c")
    Holder(pid=4242, host='batch-7f9c', following=True)
    """
    words = (name or "").split(" ", 3)
    if len(words) < 4 or words[0] != _TAG or not words[1].isdigit():
        return Holder(0, "?")
    host = words[3]
    here = this_host()
    if name is not None and len(name.encode()) >= _NAME_BYTES - 3 and here.startswith(host):
        host = here  # cut by the server's limit: a long host name, maybe this one
    return Holder(int(words[1]), host, following=words[2] == "follow")


class PgLocks:
    """Job locks as advisory locks in the state database at `url` (keys include `schema`:
    advisory locks are per database)."""

    def __init__(self, url: str, *, schema: str = pg.DEFAULT_SCHEMA) -> None:
        self.url = url
        self.schema = schema
        self._side: Connection | None = None
        # The connection holding each of this process's run locks, by job, and its session.
        self._runs: dict[str, Connection] = {}
        self._sessions: dict[str, _Session] = {}
        # Jobs this object holds a lock of (run or follower): one session takes an advisory
        # lock twice, so a second try here is refused as a second file lock would be.
        self._held: set[str] = set()
        # Jobs whose run lock another run took while this one was cut off.
        self._lost: set[str] = set()
        # The run's cancel watcher looks from a thread while the loop submits and follows.
        self._guard = threading.RLock()

    @contextlib.contextmanager
    def try_job_lock(self, job_id: str, *, following: bool = False) -> Iterator[bool]:
        with self._guard:
            mine = job_id not in self._held
            self._held.add(job_id)
        if not mine:
            yield False  # this process holds it already (a run, or another follower)
            return
        try:
            if following:
                with self._follower_lock(job_id) as held:
                    yield held
            else:
                with self._run_lock(job_id) as held:
                    yield held
        finally:
            with self._guard:
                self._held.discard(job_id)

    @contextlib.contextmanager
    def _follower_lock(self, job_id: str) -> Iterator[bool]:
        # Followers only try for an instant, often: one connection serves them all.
        key = self._job_key(job_id)
        conn = self._side_connection()
        if not self._try(conn, key):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):  # a lost connection freed it already
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextlib.contextmanager
    def _run_lock(self, job_id: str) -> Iterator[bool]:
        # A run's lock lives on a connection of its own, named after its holder, and lasts
        # exactly as long as that connection.
        key = self._job_key(job_id)
        with self._guard:
            self._runs[job_id] = self._connect(following=False)
            self._lost.discard(job_id)
        held = False
        try:
            with self._guard:
                held = self._take_run_lock(job_id, self._runs[job_id])
            yield held
        finally:
            with self._guard:
                conn = self._runs.pop(job_id)
                self._sessions.pop(job_id, None)
            # Unlocked first: the server ends a closed session a moment later, and until
            # then its locks still show.
            with contextlib.suppress(Exception):
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            conn.close()

    def still_held(self, job_id: str) -> bool:
        """Whether this process still holds the job's run lock. A lost connection (a
        database restart, a failover) lost the lock with it: it is taken again on a new
        connection if nobody else took it meanwhile; False if another run has it (or the
        database is still away), and this run must stop."""
        with self._guard:
            conn = self._runs.get(job_id)
            if conn is None or job_id in self._lost:
                return False  # lost for good: the job is another run's now
            try:
                with pg.translated(self.url):
                    conn.execute("SELECT 1")
                return True
            except AmpleBatchError:
                pass
            with contextlib.suppress(Exception):
                conn.close()
            self._sessions.pop(job_id, None)
            try:
                fresh = self._connect(following=False)
            except AmpleBatchError:
                return False
            self._runs[job_id] = fresh
            try:
                taken = self._take_run_lock(job_id, fresh)
            except AmpleBatchError:
                return False
            if not taken:
                self._lost.add(job_id)
            return taken

    def lost(self, job_id: str) -> bool:
        """Whether another run took the job's lock while this one's connection was lost."""
        return job_id in self._lost

    def fence(self, job_id: str) -> ClaimFence | None:
        """The fence of the job's claims (see `ClaimFence`); None if this object holds no run
        lock of the job.

            store.fence_claims(locks.fence(job_id))
        """
        return ClaimFence(self, job_id) if job_id in self._runs else None

    def lock_lost(self, job_id: str) -> JobLockLost:
        """The job is another run's now: recorded, and the error this run stops with."""
        self._lost.add(job_id)
        return JobLockLost(f"{LOCK_LOST}; run again once that run is done")

    def _held_in(self, db: Connection, job_id: str) -> bool:
        """Whether the job's run lock is held by this run's session, as `db`'s server sees."""
        session = self._sessions.get(job_id)
        if session is None:
            return False
        key = self._job_key(job_id)
        row = db.execute(
            _HELD_BY, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, session.pid, session.started)
        ).fetchone()
        return bool(row and row[0])

    def _take_run_lock(self, job_id: str, conn: Connection) -> bool:
        """Try the job's lock on the run's connection, recording its session if taken."""
        with pg.translated(self.url):
            row = (
                by_name(conn)
                .execute(
                    "SELECT pg_try_advisory_lock(%s) AS taken, pg_backend_pid() AS pid,"
                    " (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())"
                    " AS started",
                    (self._job_key(job_id),),
                )
                .fetchone()
            )
        if not (row and row["taken"]):
            return False
        self._sessions[job_id] = _Session(int(row["pid"]), row["started"])
        self._lost.discard(job_id)
        return True

    def holder(self, job_id: str) -> Holder | None:
        key = self._job_key(job_id)
        with pg.translated(self.url):
            row = (
                self._side_connection()
                .execute(
                    "SELECT a.application_name FROM pg_locks l"
                    " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                    WHERE datname = current_database())"
                    " AND l.classid::bigint = %s AND l.objid::bigint = %s"
                    " LIMIT 1",
                    ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
                )
                .fetchone()
            )
        return None if row is None else parse_holder(row[0])

    def request_cancel(self, job_id: str, holder: Holder) -> None:
        with pg.translated(self.url):
            self._side_connection().execute(
                "SELECT pg_advisory_lock(%s)", (self._cancel_key(job_id),)
            )

    def cancel_requested(self, job_id: str) -> bool:
        key = self._cancel_key(job_id)
        conn = self._side_connection()
        if self._try(conn, key):
            with pg.translated(self.url):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return False
        return True

    def close(self) -> None:
        """Close the shared connection (releasing a cancel request this process made)."""
        with self._guard:
            if self._side is not None:
                with contextlib.suppress(Exception):
                    # Released before the close returns: the server ends a closed session
                    # a moment later, and until then its locks still show.
                    self._side.execute("SELECT pg_advisory_unlock_all()")
                with contextlib.suppress(Exception):
                    self._side.close()
                self._side = None

    def _job_key(self, job_id: str) -> int:
        return pg.advisory_key(self.schema, "job", job_id)

    def _cancel_key(self, job_id: str) -> int:
        return pg.advisory_key(self.schema, "cancel", job_id)

    def _try(self, conn: Connection, key: int) -> bool:
        with pg.translated(self.url):
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def _side_connection(self) -> Connection:
        with self._guard:
            if self._side is None or self._side.broken:
                self._side = self._connect(following=True)
            return self._side

    def _connect(self, *, following: bool) -> Connection:
        conn = pg.connect(self.url, schema=self.schema, migrate=False)
        try:
            with pg.translated(self.url):
                conn.execute(
                    "SELECT set_config('application_name', %s, false)",
                    (holder_name(os.getpid(), this_host(), following=following),),
                )
        except BaseException:
            conn.close()
            raise
        return conn


@dataclass(frozen=True)
class ClaimFence:
    """What a claim checks that its run still holds the job's lock, in two halves: `holds`
    inside the claim's transaction, on its connection, and `recover` outside it, since taking
    a lock lost with its connection again means connecting, and the claim's transaction holds
    the schema's write lock that every other host's claims wait on."""

    locks: PgLocks
    job_id: str

    def holds(self, db: Connection) -> bool:
        """Whether this run's lock session holds the job's lock, as `db`'s server sees now."""
        return self.locks._held_in(db, self.job_id)

    def recover(self) -> None:
        """Take a lock lost with its connection again (as `still_held`); JobLockLost if
        another run took it meanwhile."""
        if not self.locks.still_held(self.job_id):
            raise self.locks.lock_lost(self.job_id)

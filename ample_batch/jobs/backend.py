"""Where the state lives and which backend serves it: the one place callers obtain a
`JobStore`, the job locks and a job's id.

A `State` is a state dir (SQLite: the job store, the ledgers and lock files in it) or, with a
`url`, a PostgreSQL database shared by many hosts (`postgres.store.PgStore`, advisory locks, the
ledgers in the same database), and then nothing is written under the dir.

    >>> import tempfile
    >>> state = State(Path(tempfile.mkdtemp()))     # a state dir, e.g. ~/.local/share/ample-batch
    >>> has_store(state)
    False
    >>> with open_store(state) as store:
    ...     store.jobs()
    []
    >>> has_store(state)
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import pg
from ..errors import InputError
from ..options import SIMULATED_DIR
from .locks import FileLocks, JobLocks
from .protocol import JobStore
from .records import Job, job_id_for
from .sqlite.db import DB_NAME

SIMULATED_SCHEMA_SUFFIX = "_simulated"
"""A simulation's PostgreSQL schema is the state's with this added: its made-up verdicts
never reach the real cache (the twin of the state dir's `simulated` folder)."""


@dataclass(frozen=True)
class State:
    """Where the job store, the verdict cache, the ledgers and the job locks live."""

    dir: Path
    """The state dir: everything, unless `url` is given (then nothing is written there)."""
    url: str | None = field(default=None, repr=False, kw_only=True)
    """A PostgreSQL URL for state shared by many hosts; kept out of the repr (a password)."""
    schema: str = field(default=pg.DEFAULT_SCHEMA, kw_only=True)
    """The PostgreSQL schema holding our tables, with `url`."""

    @property
    def shared(self) -> bool:
        """Whether the state is a database that other hosts may share."""
        return self.url is not None

    def where(self) -> str:
        """The state as messages name it: the dir, or the URL without its password.

        >>> State(Path("/s"), url="postgresql://ana:pw@db/leads").where()
        'postgresql://ana:***@db/leads (schema ample_batch)'
        """
        if self.url is None:
            return str(self.dir)
        return f"{pg.redacted(self.url)} (schema {self.schema})"

    def job_id(
        self, input_path: str, fingerprint: str, email_column: str, *, sheet: str | None = None
    ) -> str:
        """The id this state gives the job of an input: SQLite's depends on the path too;
        the shared state finds a job by its content alone, on any host and under any path.
        `sheet` is `InputSpec.identity_sheet`: a workbook's other sheets are other jobs."""
        if self.url is not None:
            return pg.content_job_id(fingerprint, email_column, sheet=sheet)
        return job_id_for(input_path, fingerprint, email_column, sheet=sheet)

    def for_mode(self, simulate: bool) -> State:
        """This state, or (`simulate`) the one a simulation uses instead: the one place that
        chooses, for runs, estimates, status, cancel, reports and frames alike."""
        return self.simulated(SIMULATED_DIR) if simulate else self

    def simulated(self, subdir: str) -> State:
        """The state a simulation uses instead: a dir of its own, or a schema of its own."""
        if self.url is None:
            return replace(self, dir=self.dir / subdir)
        schema = self.schema + SIMULATED_SCHEMA_SUFFIX
        if len(schema) > pg.MAX_SCHEMA_LENGTH:
            room = pg.MAX_SCHEMA_LENGTH - len(SIMULATED_SCHEMA_SUFFIX)
            raise InputError(
                f"--state-schema {self.schema}: at most {room} characters with --simulate, "
                f"which keeps its made-up verdicts in {self.schema}{SIMULATED_SCHEMA_SUFFIX}"
            )
        return replace(self, schema=pg.check_schema(schema))


Where = State | Path
"""A state, or (the SQLite default) just its dir."""


def as_state(where: Where) -> State:
    """`where` as a State: a bare path is a SQLite state dir."""
    return where if isinstance(where, State) else State(where)


def open_store(
    where: Where, *, clock: Callable[[], float] = time.time, timeout: float = 30.0
) -> JobStore:
    """The job store of `where`, created (with the dir, or the schema) on first use.

    `clock` gives the store's times (epoch seconds); `timeout` is how long a SQLite write
    waits for another process's before StateUnavailable.
    """
    state = as_state(where)
    if state.url is not None:
        # Here, not at the top: psycopg is an optional extra, and `status` stays light.
        from .postgres.store import PgStore

        store: JobStore = PgStore(state.url, schema=state.schema, clock=clock)
        return store
    from .sqlite.store import Store

    # Returned as the protocol, so mypy checks here that the SQLite store conforms to it.
    return Store(state.dir, clock=clock, timeout=timeout)


def has_store(where: Where) -> bool:
    """Whether the state holds a job store yet: a look (`status`, `estimate`) must not
    create one."""
    state = as_state(where)
    if state.url is None:
        return (state.dir / DB_NAME).exists()
    conn = pg.connect(state.url, schema=state.schema, migrate=False)
    try:
        with pg.translated(state.url):
            return pg.schema_version(conn, state.schema) > 0
    finally:
        conn.close()


def locks_of(store: JobStore) -> JobLocks:
    """The job locks that go with an open `store`: its state dir's files, or its database's
    advisory locks (for callers handed a store alone; the pipeline passes its own). Not in
    the protocol: where the locks live is the backend's business, not the callers'."""
    state_dir = getattr(store, "state_dir", None)
    if isinstance(state_dir, Path):
        return FileLocks(state_dir)
    url = getattr(store, "url", None)
    if not isinstance(url, str):
        raise TypeError(f"{type(store).__name__} has neither a state dir nor a database URL")
    return job_locks(State(Path(), url=url, schema=getattr(store, "schema", pg.DEFAULT_SCHEMA)))


def job_locks(where: Where) -> JobLocks:
    """The job locks of `where`: files in the state dir, or the database's advisory locks.
    Close them when done."""
    state = as_state(where)
    if state.url is not None:
        from .postgres.locks import PgLocks

        return PgLocks(state.url, schema=state.schema)
    return FileLocks(state.dir)


def fence_claims(store: JobStore, locks: JobLocks, job_id: str) -> None:
    """Make the store's claims for `job_id` (`mark_submitting`) check in their own
    transaction that this process still holds the job's lock, when both the store and the
    locks are PostgreSQL's and the locks hold the job: a run whose lock connection died while
    another host took the job then buys nothing more (JobLockLost, exit 75). File locks
    cannot be lost while their process lives: nothing to check there.

        fence_claims(store, locks, job_id)   # once the run holds the job's lock
    """
    if getattr(store, "url", None) is None:
        return
    from .postgres.locks import PgLocks
    from .postgres.store import PgStore

    if isinstance(store, PgStore) and isinstance(locks, PgLocks):
        fence = locks.fence(job_id)
        if fence is not None:
            store.fence_claims(fence)


def lock_lost(locks: JobLocks, job_id: str) -> str | None:
    """Why the run must stop, if another run took the job's lock from it; else None."""
    from .postgres.locks import LOCK_LOST, PgLocks

    return LOCK_LOST if isinstance(locks, PgLocks) and locks.lost(job_id) else None


def find_job(store: JobStore, ref: str) -> Job:
    """The job whose id is `ref` or starts with it, as `status` shows ids; InputError naming
    the jobs when there is none or more than one.

        job = find_job(store, "3f9a")
    """
    found = store.get_job(ref)
    if found is not None:
        return found
    matches = sorted(job.id for job in store.jobs() if job.id.startswith(ref.lower()))
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InputError(f"job {ref!r} is more than one job ({shown}); give more of its id")
    raise InputError(f"no job {ref!r}: see `ample-batch status` for the jobs there are")

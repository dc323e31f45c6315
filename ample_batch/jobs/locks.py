"""One run per job at a time: the lock seam, and its SQLite-side implementation (OS file locks
in the state dir). `postgres.locks.PgLocks` is the PostgreSQL one (advisory locks);
`backend.job_locks` picks.

Either kind is released when its holder dies, even by SIGKILL, and records who holds it (host
and process), so `status` can say who runs a job and `cancel` can ask that run to stop.

    >>> import contextlib, tempfile
    >>> from ample_batch.jobs.backend import State, job_locks
    >>> state = State(Path(tempfile.mkdtemp()))
    >>> with contextlib.closing(job_locks(state)) as locks, job_lock(locks, "3f9a"):
    ...     locks.holder("3f9a").pid == os.getpid()   # JobBusy for any other run meanwhile
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..errors import JobBusy
from .state_dir import make_state_dir, os_state_error

_PROBE_TRIES = 5


def this_host() -> str:
    """This machine's (or container's) name, as lock holders are recorded."""
    return socket.gethostname()


@dataclass(frozen=True)
class Holder:
    """Who holds a job's lock: a process on a host."""

    pid: int
    """The holder's process id, on its host (0 if it could not be read)."""
    host: str
    """The holder's host name (`this_host()` there)."""
    following: bool = False
    """It only follows the job's open batches for another job (its own run is gone)."""

    @property
    def here(self) -> bool:
        """Whether the holder runs on this host, so it can be signalled."""
        return self.host == this_host()

    def describe(self) -> str:
        """'process 123', or 'process 123 on host b' when it is another host's."""
        return f"process {self.pid}" + ("" if self.here else f" on host {self.host}")


class JobLocks(Protocol):
    """Where a state's job locks and cancel requests live."""

    def try_job_lock(self, job_id: str, *, following: bool = False) -> AbstractContextManager[bool]:
        """The job's lock if it is free (True), else False at once: tells a live run's job
        from an abandoned one. The lock records this process, and whether it runs the job
        or only follows its open batches for another job (`following`)."""
        ...

    def holder(self, job_id: str) -> Holder | None:
        """Who holds the job's lock, or None if nobody does."""
        ...

    def request_cancel(self, job_id: str, holder: Holder) -> None:
        """Ask the run of `holder` to cancel the job's validations when it stops; the
        request lasts while this process lives (or, for files, until read)."""
        ...

    def cancel_requested(self, job_id: str) -> bool:
        """Whether `cancel` asked this process to cancel the job."""
        ...

    def close(self) -> None:
        """Release what the locks hold open (a held lock is released by its context)."""
        ...


@contextlib.contextmanager
def job_lock(locks: JobLocks, job_id: str) -> Iterator[None]:
    """Hold the job's lock for the duration; JobBusy if another process has it.

    Released when the holder dies, even by SIGKILL (a file lock with the process, an
    advisory lock with its connection).
    """
    with locks.try_job_lock(job_id) as held:
        if not held:
            found = locks.holder(job_id)
            who = f" ({found.describe()})" if found else ""
            raise JobBusy(
                f"job {job_id} is already running in another process{who}; wait for it to "
                f"finish, or stop it with `ample-batch cancel {job_id}`"
            )
        yield


class FileLocks:
    """Job locks as OS file locks under `<state dir>/locks`, one file per job holding its
    holder's process id."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @contextlib.contextmanager
    def try_job_lock(self, job_id: str, *, following: bool = False) -> Iterator[bool]:
        path = self._lock_path(job_id)
        try:
            handle = open(path, "a+")  # noqa: SIM115 - closed below, after the yield
        except OSError as exc:
            raise os_state_error(path, exc) from exc
        with handle:
            if not _lock_exclusive(handle):
                yield False
                return
            try:
                handle.truncate(0)
                handle.write(f"{os.getpid()}{' following' if following else ''}\n")
                handle.flush()
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder(self, job_id: str) -> Holder | None:
        path = self.state_dir / "locks" / f"{job_id}.lock"
        if not path.exists():
            return None
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                words = handle.read().split()
                pid = int(words[0]) if words and words[0].isdigit() else 0
                return Holder(pid, this_host(), following=words[1:2] == ["following"])
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    def request_cancel(self, job_id: str, holder: Holder) -> None:
        self._cancel_path(job_id).write_text(f"{holder.pid}\n")

    def cancel_requested(self, job_id: str) -> bool:
        # A request naming another process, left by an earlier run, is ignored and removed.
        path = self._cancel_path(job_id)
        try:
            text = path.read_text().strip()
        except OSError:
            return False
        path.unlink(missing_ok=True)
        return text == str(os.getpid())

    def close(self) -> None:
        pass

    def _lock_path(self, job_id: str) -> Path:
        make_state_dir(self.state_dir)
        locks = self.state_dir / "locks"
        try:
            locks.mkdir(exist_ok=True)
        except OSError as exc:
            raise os_state_error(locks, exc) from exc
        return locks / f"{job_id}.lock"

    def _cancel_path(self, job_id: str) -> Path:
        return self.state_dir / "locks" / f"{job_id}.cancel"


def _lock_exclusive(handle: IO[str]) -> bool:
    """Take the lock without waiting for its holder; a few tries over a few milliseconds,
    because `holder()`'s probe takes it shared for an instant and must not look like a run."""
    for attempt in range(_PROBE_TRIES):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < _PROBE_TRIES:
                time.sleep(0.005)
    return False

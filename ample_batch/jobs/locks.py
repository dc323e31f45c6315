"""One run per job at a time: an OS file lock in the state dir.

The lock file holds the holder's process id, so `status` can say which process runs a job
and `cancel` can ask it to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import JobBusy
from .state_dir import make_state_dir, os_state_error

_PROBE_TRIES = 5


def _lock_path(state_dir: Path, job_id: str) -> Path:
    make_state_dir(state_dir)
    locks = state_dir / "locks"
    try:
        locks.mkdir(exist_ok=True)
    except OSError as exc:
        raise os_state_error(locks, exc) from exc
    return locks / f"{job_id}.lock"


@contextlib.contextmanager
def job_lock(state_dir: Path, job_id: str) -> Iterator[None]:
    """Hold the job's lock for the duration; JobBusy if another process has it.

    An OS file lock: it is released when the holder dies, even by SIGKILL.
    """
    with try_job_lock(state_dir, job_id) as held:
        if not held:
            pid = holder(state_dir, job_id)
            who = f" (process {pid})" if pid else ""
            raise JobBusy(
                f"job {job_id} is already running in another process{who}; wait for it to "
                f"finish, or stop it with `ample-batch cancel {job_id}`"
            )
        yield


@contextlib.contextmanager
def try_job_lock(state_dir: Path, job_id: str, *, following: bool = False) -> Iterator[bool]:
    """The job's lock if it is free (True), else False at once: tells a live run's job
    from an abandoned one. The lock file then names this process, and whether it runs the
    job or only follows its open batches for another job (`following`)."""
    path = _lock_path(state_dir, job_id)
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


def following(state_dir: Path, job_id: str) -> bool:
    """Whether the process holding the job's lock only follows its open batches for another
    job (it took over an abandoned batch), rather than running the job itself."""
    try:
        words = _lock_path(state_dir, job_id).read_text().split()
    except OSError:
        return False
    return words[1:2] == ["following"]


def holder(state_dir: Path, job_id: str) -> int | None:
    """The process id of the live run holding the job's lock, or None if none holds it."""
    path = state_dir / "locks" / f"{job_id}.lock"
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            words = handle.read().split()
            return int(words[0]) if words and words[0].isdigit() else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def request_cancel(state_dir: Path, job_id: str, pid: int) -> None:
    """Ask the run of process `pid` to cancel the job's validations when it stops."""
    _cancel_path(state_dir, job_id).write_text(f"{pid}\n")


def cancel_requested(state_dir: Path, job_id: str) -> bool:
    """Whether `cancel` asked this process to cancel the job (a request naming another
    process, left by an earlier run, is ignored and removed)."""
    path = _cancel_path(state_dir, job_id)
    try:
        text = path.read_text().strip()
    except OSError:
        return False
    path.unlink(missing_ok=True)
    return text == str(os.getpid())


def _cancel_path(state_dir: Path, job_id: str) -> Path:
    return state_dir / "locks" / f"{job_id}.cancel"

"""One run per job at a time: an OS file lock in the state dir."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from .errors import JobBusy


@contextlib.contextmanager
def job_lock(state_dir: Path, job_id: str) -> Iterator[None]:
    """Hold the job's lock for the duration; JobBusy if another process has it.

    An OS file lock: it is released when the holder dies, even by SIGKILL.
    """
    locks = state_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{job_id}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusy(
                f"job {job_id} is already running in another process; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Which job store a state dir gets: the one place callers obtain a `JobStore`.

Today always the SQLite store in the state dir; a second backend is chosen here, so the
pipeline that opens stores does not change.

    if has_store(state_dir):
        with open_store(state_dir) as store:
            store.jobs()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .db import DB_NAME
from .protocol import JobStore
from .store import Store


def open_store(
    state_dir: Path, *, clock: Callable[[], float] = time.time, timeout: float = 30.0
) -> JobStore:
    """The job store of `state_dir`, created (with the dir) on first use.

    `clock` gives the store's times (epoch seconds); `timeout` is how long a write waits
    for another process's before StateUnavailable.
    """
    # Returned as the protocol, so mypy checks here that the SQLite store conforms to it.
    return Store(state_dir, clock=clock, timeout=timeout)


def has_store(state_dir: Path) -> bool:
    """Whether the state dir holds a job store yet: a look (`status`, `estimate`) must not
    create one."""
    return (state_dir / DB_NAME).exists()

"""sqlite3's errors translated into ours, for every SQLite file of the state: the job store
(`jobs/sqlite/db.py`) and the quota ledgers (`quota/sqlite_ledger.py`) both go through here.

The error class says what the user does next: StateUnavailable (exit 75) where running the
same command again will work (locked by another process past the busy timeout, disk full, an
I/O error), StateUnusable (exit 2) where they must act first (corrupt, read-only, cannot be
opened), StateFailed (exit 1) for the rest, which we cannot name. Decided by SQLite's result
code, never by the message; the message names the file.

    with translated(path):
        db.execute("BEGIN IMMEDIATE")   # locked: StateUnavailable("<path>: is locked ...")
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .errors import StateFailed, StateUnavailable, StateUnusable

# Primary SQLite result codes (the low byte of `sqlite_errorcode`).
_BUSY, _LOCKED, _FULL, _IOERR = 5, 6, 13, 10
_READONLY, _CANTOPEN, _PERM, _CORRUPT, _NOTADB = 8, 14, 3, 11, 26


@contextlib.contextmanager
def translated(path: Path | str) -> Iterator[None]:
    """sqlite3's errors inside the block as ours, naming `path` and what to do.

    with translated(Path("state/ample-batch.sqlite")):
        db.execute("COMMIT")
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise state_error(path, exc) from exc


def state_error(
    path: Path | str, exc: sqlite3.Error
) -> StateUnavailable | StateUnusable | StateFailed:
    """The error of ours for `exc`, raised on the SQLite file at `path`, by its result code
    (one made up, as here, has none: it is one we cannot name).

    >>> print(state_error("s/ledger-ab12.sqlite", sqlite3.DatabaseError("boom")))
    s/ledger-ab12.sqlite: the state database failed (boom); please report it
    """
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (_BUSY, _LOCKED):
        return StateUnavailable(
            f"{path}: is locked by another process ({exc}); run the same command again later"
        )
    if code in (_FULL, _IOERR):
        return StateUnavailable(
            f"{path}: cannot be written ({exc}); free disk space, then run the same command again"
        )
    if code in (_CORRUPT, _NOTADB):
        return StateUnusable(
            f"{path}: is not a readable ample-batch database ({exc}); move it aside, or use "
            "another --state-dir (or AMPLE_BATCH_HOME)"
        )
    if code in (_READONLY, _CANTOPEN, _PERM):
        return StateUnusable(
            f"{path}: cannot be opened for writing ({exc}); make it writable, or use another "
            "--state-dir (or AMPLE_BATCH_HOME)"
        )
    return StateFailed(f"{path}: the state database failed ({exc}); please report it")

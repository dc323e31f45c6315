"""The state dir itself: created or refused with a message that says what to do, and a
database that was lost while the key's ledger remembers spend refused before it is recreated.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import StateUnavailable, StateUnusable
from ..quota.config import ledger_file_name
from .sqlite.db import DB_NAME


def make_state_dir(state_dir: Path) -> None:
    """Create the state dir, or say which path is wrong and what to do (exit 2 or 75)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_state_error(state_dir, exc) from exc
    if not state_dir.is_dir():
        raise StateUnusable(
            f"{state_dir}: the state dir is not a directory; pass another --state-dir "
            "(or set AMPLE_BATCH_HOME)"
        )


def os_state_error(path: Path, exc: OSError) -> StateUnavailable | StateUnusable:
    """An OS error on the state dir as ours: a full disk passes, the rest needs the user."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StateUnavailable(
            f"{path}: no space left ({exc.strerror}); free disk space, then run again"
        )
    return StateUnusable(
        f"{path}: cannot be used as the state dir ({exc.strerror}); pass another --state-dir "
        "(or set AMPLE_BATCH_HOME)"
    )


def refuse_reset_state(state_dir: Path, key_id: str | None = None) -> None:
    """Refuse a state database that is empty while this key's ledger (any key's, when
    `key_id` is None) shows past spend.

    SQLite opens a zero-length file as a new, empty database: every job in it would be
    bought again. A database that is missing entirely is a fresh start the user chose.
    """
    db_path = state_dir / DB_NAME
    try:
        if db_path.stat().st_size > 0:
            return
    except FileNotFoundError:
        return
    # Here, not at the top: the ledger module loads pyrate-limiter, which `status` never needs.
    from ..quota.sqlite_ledger import SQLiteLedgerFile

    for ledger in sorted(state_dir.glob(ledger_file_name(key_id or "*"))):
        if not SQLiteLedgerFile(ledger).shows_spend():
            continue
        raise StateUnusable(
            f"{db_path}: the state database is empty, but {ledger.name} shows emails "
            "submitted with this key: the job state was lost, and starting afresh would pay "
            "again for them. Restore the database, or move it aside to start afresh knowingly"
        )

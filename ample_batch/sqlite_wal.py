"""Switching a SQLite file to WAL mode when several processes open it at once.

The job store and the quota ledgers are SQLite files that many processes share. The first
`PRAGMA journal_mode=WAL` on a new file needs an exclusive lock, and while two processes
race to it SQLite answers SQLITE_BUSY at once, without waiting the connection's busy
timeout (it would risk a deadlock). So the switch is tried again for up to the timeout.

    >>> import sqlite3, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "state.sqlite")
    >>> conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    >>> enable_wal(conn, timeout=30.0)
    >>> conn.execute("PRAGMA journal_mode").fetchone()
    ('wal',)
    >>> conn.close()
"""

from __future__ import annotations

import sqlite3
import time

_RETRY_SECONDS = 0.01


def enable_wal(conn: sqlite3.Connection, *, timeout: float) -> None:
    """Put the file of `conn` in WAL mode, retrying a busy answer for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            )
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY_SECONDS)

"""WAL mode on a file another process holds: the switch waits instead of failing at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ample_batch.sqlite_wal import enable_wal


def _held(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A connection holding the file's exclusive lock, and one that answers busy at once
    (timeout 0), as SQLite answers two processes racing to the first WAL switch."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder, sqlite3.connect(path, isolation_level=None, timeout=0)


def test_the_switch_is_retried_until_the_other_connection_lets_go(tmp_path: Path) -> None:
    holder, conn = _held(tmp_path / "state.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("PRAGMA journal_mode=WAL")  # what a single try meets
    released = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    released.start()
    enable_wal(conn, timeout=30.0)
    released.join()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_lock_held_past_the_timeout_is_still_an_error(tmp_path: Path) -> None:
    holder, conn = _held(tmp_path / "state.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(conn, timeout=0.05)
    holder.execute("COMMIT")

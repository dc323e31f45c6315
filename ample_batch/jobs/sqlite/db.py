"""The SQLite job store's database: its schema and migrations, and how it is opened and
written (one `BEGIN IMMEDIATE` transaction per change), sqlite3's errors translated into ours
on the way (`sqlite_errors`, shared with the quota ledgers). The records read from it are
backend-neutral: see records.py.

Each entry of MIGRATIONS moves the schema one version forward (`PRAGMA user_version`); an
entry that has shipped is never edited, so an older database always opens.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ...errors import StateUnusable
from ...sqlite_errors import translated
from ...sqlite_wal import enable_wal

DB_NAME = "ample-batch.sqlite"


# Each entry moves the schema one version forward; never edit one that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        input_path TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        email_column TEXT NOT NULL,
        output_path TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        cache_cutoff REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'new',
        stats TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        source TEXT NOT NULL DEFAULT 'api',
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        size INTEGER NOT NULL,
        remote_id TEXT,
        remote_href TEXT,
        next_href TEXT,
        remote_status TEXT,
        poll_after REAL,
        submitted_at REAL,
        updated_at REAL NOT NULL,
        error TEXT
    );
    CREATE INDEX batches_job_state ON batches(job_id, state);
    CREATE TABLE batch_emails (
        batch_id INTEGER NOT NULL REFERENCES batches(id),
        email TEXT NOT NULL,
        result TEXT,
        catch_all INTEGER,
        PRIMARY KEY (batch_id, email)
    ) WITHOUT ROWID;
    CREATE TABLE verdicts (
        email TEXT PRIMARY KEY,
        result TEXT NOT NULL,
        catch_all INTEGER,
        checked_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: emails possibly paid twice, over the job's whole life (a run killed mid-POST, or a POST
    # whose answer was lost, is resent: the API has no idempotency key).
    """
    ALTER TABLE jobs ADD COLUMN possible_double_charges INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: a batch whose polls or pages keep failing is retried across runs for a bounded
    # time, so its failures are counted on it; emails the API refused (a 400 naming the item)
    # are remembered, so a rerun does not send them again.
    """
    ALTER TABLE batches ADD COLUMN follow_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN first_failure_at REAL;
    CREATE TABLE rejected_emails (
        email TEXT PRIMARY KEY,
        error TEXT,
        rejected_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: the API identity a job buys through (key id and base URL, never the key), so a job
    # plans against every open batch on the same key; the batch an adopted batch waits for;
    # the cache's check time indexed, for freshness lookups and pruning.
    """
    ALTER TABLE jobs ADD COLUMN key_id TEXT;
    ALTER TABLE jobs ADD COLUMN base_url TEXT;
    ALTER TABLE batches ADD COLUMN adopts INTEGER;
    CREATE INDEX verdicts_checked_at ON verdicts(checked_at);
    """,
]


def connect(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the state database in WAL mode and bring its schema up to date.

    Rows come back as `sqlite3.Row`, read by column name. A database written by a newer
    ample-batch is refused: its columns may mean something this version does not know.
    """
    with translated(path):
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            enable_wal(db, timeout=timeout)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _migrate(db, path)
        except BaseException:
            db.close()
            raise
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    with transaction(db, path):
        version = schema_version(db)
        if version > len(MIGRATIONS):
            raise StateUnusable(
                f"{path}: was written by a newer ample-batch (schema {version}, this one knows "
                f"{len(MIGRATIONS)}); upgrade ample-batch, or use another --state-dir"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def transaction(
    db: sqlite3.Connection, path: Path | None = None, *, durable: bool = False
) -> Iterator[sqlite3.Connection]:
    """One write transaction: every state transition is exactly one of these.

    `durable` commits with `synchronous=FULL`: for the transitions around a paid POST, which
    must survive even an OS crash. sqlite3 errors are translated (see `translated`).
    """
    name = Path(path or _db_file(db))
    with translated(name):
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            # IMMEDIATE: take the write lock up front, so two processes never deadlock upgrading.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (locked, disk full) leaves the transaction open: end it, so
                # the connection can retry.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")


def _db_file(db: sqlite3.Connection) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row is not None else "the state database"

"""The state database: its schema and migrations, how it is opened and written (one
`BEGIN IMMEDIATE` transaction per change), and the records read from it.

Each entry of MIGRATIONS moves the schema one version forward (`PRAGMA user_version`); an
entry that has shipped is never edited, so an older database always opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

DB_NAME = "ample-batch.sqlite"
BATCH_ATTEMPTS = 3


class BatchState(StrEnum):
    PLANNED = "planned"
    SUBMITTING = "submitting"
    RUNNING = "running"
    FETCHING = "fetching"
    DONE = "done"
    FAILED = "failed"


OPEN_STATES = (BatchState.SUBMITTING, BatchState.RUNNING, BatchState.FETCHING)

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
    # 3 (H3): a batch whose polls or pages keep failing is retried across runs for a bounded
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
]


@dataclass(frozen=True)
class Job:
    """One input file being validated, across as many runs as it takes."""

    id: str
    input_path: str
    fingerprint: str
    email_column: str
    output_path: str | None
    created_at: float
    updated_at: float
    cache_cutoff: float
    state: str
    stats: dict[str, Any]
    possible_double_charges: int
    """Emails that may have been paid twice, over every run of the job."""


@dataclass(frozen=True)
class Batch:
    """One POST's worth of emails and where it stands."""

    id: int
    job_id: str
    source: str
    state: BatchState
    attempt: int
    size: int
    remote_id: str | None
    remote_href: str | None
    next_href: str | None
    remote_status: str | None
    poll_after: float | None
    submitted_at: float | None
    error: str | None


@dataclass(frozen=True)
class Progress:
    """Counts of a job's emails and batches, for status lines and summaries."""

    emails: int
    resolved: int
    cached: int
    failed: int
    batches: dict[str, int]

    @property
    def pending(self) -> int:
        return self.emails - self.resolved - self.failed


def job_id_for(input_path: str, fingerprint: str, email_column: str) -> str:
    """A short stable id: the same file, content and column always give the same job."""
    digest = hashlib.sha256("\0".join((input_path, fingerprint, email_column)).encode())
    return digest.hexdigest()[:12]


def connect(path: Path) -> sqlite3.Connection:
    """Open the state database in WAL mode and bring its schema up to date."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    with transaction(db):
        version = schema_version(db)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
    return db


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: every state transition is exactly one of these."""
    # IMMEDIATE: take the write lock up front, so two processes never deadlock upgrading.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

"""The SQLite job store's connection, its reads and its jobs: the base of `store.Store`.

Every read goes through `_rows`, `_row` or `_bulk` and every write through `_transaction`, so
sqlite3's errors always reach callers as ours (errors.State*). A job is one input (path,
content fingerprint, email column) across every run it takes; it records this run's output
path and the API identity it buys through (key id and base URL, never the key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ...options import cache_cutoff
from ...sqlite_errors import translated
from ..records import Job, job_id_for
from ..state_dir import make_state_dir, refuse_reset_state
from ..store_shared import SharedStore
from .db import DB_NAME, connect, schema_version, transaction

_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
T = TypeVar("T")


class JobRecords(SharedStore[sqlite3.Connection]):
    """The connection (WAL, one transaction per change) and the jobs table."""

    def __init__(self, state_dir: Path, *, clock: Any = time.time, timeout: float = 30.0) -> None:
        make_state_dir(state_dir)
        # Before the migrations turn an empty file into a valid empty database: `status` or
        # `estimate` looking at a truncated one must not make the next run buy everything.
        refuse_reset_state(state_dir)
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self._clock = clock
        self._db = connect(self.path, timeout=timeout)

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        with translated(self.path):
            return schema_version(self._db)

    def _transaction(
        self, *, durable: bool = False
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self.path, durable=durable)

    def _write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = False,
        idempotent: bool = False,
    ) -> T:
        # `idempotent` is for a commit whose answer was lost: SQLite's lands or raises.
        with self._transaction(durable=durable) as db:
            return work(db)

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with translated(self.path):
            return self._db.execute(query, params).fetchall()

    def _row(self, query: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with translated(self.path):
            row: sqlite3.Row | None = self._db.execute(query, params).fetchone()
            return row

    def _bulk(self, query: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows as plain tuples, streamed, for reads of millions of rows: the `sqlite3.Row`
        that every other read gets (columns by name) is one more object per row there."""
        with translated(self.path):
            cursor = self._db.cursor()
            cursor.row_factory = None
            cursor.execute(query, params)
        return _streamed(self.path, cursor)

    # -- jobs ----------------------------------------------------------------------------

    def open_job(
        self,
        *,
        input_path: str,
        fingerprint: str,
        email_column: str,
        output_path: str | None,
        cache_ttl: float,
        key_id: str | None = None,
        base_url: str | None = None,
        sheet: str | None = None,
    ) -> Job:
        """The id is `records.job_id_for` (the input's path, content, column and sheet); the
        sheet is kept in no column of its own."""
        job_id = job_id_for(input_path, fingerprint, email_column, sheet=sheet)
        now = self._clock()
        cutoff = cache_cutoff(now, cache_ttl)
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, input_path, fingerprint, email_column,"
                " output_path, created_at, updated_at, cache_cutoff) VALUES (?,?,?,?,?,?,?,?)",
                (job_id, input_path, fingerprint, email_column, output_path, now, now, cutoff),
            )
            db.execute(
                "UPDATE jobs SET output_path = ?, updated_at = ?, key_id = COALESCE(?, key_id),"
                " base_url = COALESCE(?, base_url) WHERE id = ?",
                (output_path, now, key_id, base_url, job_id),
            )
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> Job | None:
        # A prefix compared as text, not LIKE: `_` and `%` in what the user typed are no wildcards.
        rows = self._rows(
            "SELECT * FROM jobs WHERE substr(id, 1, length(?1)) = lower(?1) ORDER BY id LIMIT 2",
            (job_id,),
        )
        return self._job(rows[0]) if len(rows) == 1 else None

    def jobs(self) -> list[Job]:
        rows = self._rows("SELECT * FROM jobs ORDER BY updated_at DESC")
        return [self._job(row) for row in rows]

    def _job(self, row: sqlite3.Row) -> Job:
        values = {name: row[name] for name in _JOB_FIELDS}
        values["stats"] = json.loads(values["stats"])
        return Job(**values)

    def note_possible_double_charges(self, job_id: str, emails: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET possible_double_charges = possible_double_charges + ?"
                " WHERE id = ?",
                (emails, job_id),
            )

    def update_job(self, job_id: str, *, state: str, stats: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, stats = ?, updated_at = ? WHERE id = ?",
                (state, json.dumps(stats, sort_keys=True), self._clock(), job_id),
            )


def _streamed(path: Path, cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
    with translated(path):
        yield from cursor

"""The PostgreSQL job store's base: its connection (conn.py) and the jobs table.

A job here is found by what it is: `pg.content_job_id` of the input's content fingerprint,
email column and sheet, so the same file under another path, on another host or in another
container resumes the same job. Each run records its own input and output paths and the API
identity it buys through (key id and base URL, never the key).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ... import pg
from ...options import cache_cutoff
from ..records import Batch, BatchState, Job
from ..store_shared import SharedStore
from .conn import RECONNECT_WAITS, PgConnection, by_name

if TYPE_CHECKING:
    from ...pg import Connection

_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))
JOB_COLUMNS = ", ".join(_JOB_FIELDS)
BATCH_COLUMNS = ", ".join(_BATCH_FIELDS)
T = TypeVar("T")


def job_from_row(row: Sequence[Any]) -> Job:
    values = dict(zip(_JOB_FIELDS, row, strict=True))
    stats = values["stats"]
    values["stats"] = json.loads(stats) if isinstance(stats, str) else dict(stats)
    return Job(**values)


def batch_from_row(row: Sequence[Any]) -> Batch:
    values = dict(zip(_BATCH_FIELDS, row, strict=True))
    values["state"] = BatchState(values["state"])
    return Batch(**values)


class PgJobRecords(SharedStore["Connection"]):
    """The connection and the jobs table; the base of `store.PgStore`."""

    state_dir: Path | None = None
    """No state dir: with PostgreSQL nothing is written under --state-dir, and job locks are
    the database's (advisory locks), not files."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = pg.DEFAULT_SCHEMA,
        clock: Callable[[], float] = time.time,
        retry_waits: Sequence[float] = RECONNECT_WAITS,
    ) -> None:
        self.url = url
        self.schema = schema
        self._clock = clock
        self._pg = PgConnection(url, schema=schema, retry_waits=retry_waits)
        self.where = self._pg.where
        """The URL without its password, for messages."""

    def close(self) -> None:
        self._pg.close()

    @property
    def schema_version(self) -> int:
        return self._pg.read(lambda db: pg.schema_version(db, self.schema))

    def _write(
        self, work: Callable[[Connection], T], *, durable: bool = False, idempotent: bool = False
    ) -> T:
        return self._pg.write(work, durable=durable, idempotent=idempotent)

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._pg.read(lambda db: db.execute(query, params).fetchall())

    def _row(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._pg.read(lambda db: db.execute(query, params).fetchone())

    def _named_rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows read by column name (`conn.by_name`)."""
        return self._pg.read(lambda db: by_name(db).execute(query, params).fetchall())

    def _named_row(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self._pg.read(lambda db: by_name(db).execute(query, params).fetchone())

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
        """The id is `pg.content_job_id` (content, column and sheet: wherever the input lies);
        each run records its own input path too.

            job = store.open_job(input_path="/data/leads.csv", fingerprint=digest,
                                 email_column="Email", output_path=None, cache_ttl=86400)
        """
        job_id = pg.content_job_id(fingerprint, email_column, sheet=sheet)
        now = self._clock()
        cutoff = cache_cutoff(now, cache_ttl)

        def work(db: Connection) -> None:
            db.execute(
                "INSERT INTO jobs (id, input_path, fingerprint, email_column, output_path,"
                " created_at, updated_at, cache_cutoff) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (id) DO NOTHING",
                (job_id, input_path, fingerprint, email_column, output_path, now, now, cutoff),
            )
            db.execute(
                "UPDATE jobs SET input_path = %s, output_path = %s, updated_at = %s,"
                " key_id = COALESCE(%s, key_id), base_url = COALESCE(%s, base_url)"
                " WHERE id = %s",
                (input_path, output_path, now, key_id, base_url, job_id),
            )

        self._pg.write(work, idempotent=True)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> Job | None:
        rows = self._rows(
            # lower(): ids are lower-case hex, and SQLite's LIKE ignores case too.
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE starts_with(id, lower(%s)) ORDER BY id LIMIT 2",
            (job_id,),
        )
        return job_from_row(rows[0]) if len(rows) == 1 else None

    def jobs(self) -> list[Job]:
        rows = self._rows(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY updated_at DESC, id")
        return [job_from_row(row) for row in rows]

    def note_possible_double_charges(self, job_id: str, emails: int) -> None:
        # Not idempotent: an increment whose commit was lost is not added twice.
        self._pg.write(
            lambda db: db.execute(
                "UPDATE jobs SET possible_double_charges = possible_double_charges + %s"
                " WHERE id = %s",
                (emails, job_id),
            ),
            serialised=False,
        )

    def update_job(self, job_id: str, *, state: str, stats: dict[str, Any]) -> None:
        now = self._clock()
        self._pg.write(
            lambda db: db.execute(
                "UPDATE jobs SET state = %s, stats = %s::jsonb, updated_at = %s WHERE id = %s",
                (state, json.dumps(stats, sort_keys=True), now, job_id),
            ),
            idempotent=True,
            serialised=False,
        )

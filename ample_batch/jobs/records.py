"""What the job store holds, whatever its backend: jobs, batches, progress, and the batch
state machine's legal moves.

    planned -> submitting -> running -> fetching -> done | failed
    waiting -> done          (adopted: emails another job on the key has in flight)

    >>> BatchState.SUBMITTING in MOVES[BatchState.PLANNED]
    True
    >>> BatchState.PLANNED in MOVES[BatchState.DONE]
    False
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

BATCH_ATTEMPTS = 3
"""Submissions of the same emails after which a batch's unresolved ones are `failed`."""


class BatchState(StrEnum):
    PLANNED = "planned"
    SUBMITTING = "submitting"
    RUNNING = "running"
    FETCHING = "fetching"
    DONE = "done"
    FAILED = "failed"
    WAITING = "waiting"
    """An adopted batch: its emails are in flight in another job's batch (`adopts`), and
    their verdicts are taken from there once it settles."""


OPEN_STATES = (BatchState.SUBMITTING, BatchState.RUNNING, BatchState.FETCHING)
"""A batch in one of these may have been paid for and its verdicts are not all in yet."""


MOVES: dict[BatchState, frozenset[BatchState]] = {
    # Back to planned: the POST was refused, or stopped before it went out.
    BatchState.PLANNED: frozenset({BatchState.PLANNED, BatchState.SUBMITTING, BatchState.DONE}),
    # Again `submitting`: the client's retry of a POST that was refused outright.
    BatchState.SUBMITTING: frozenset(
        {BatchState.SUBMITTING, BatchState.PLANNED, BatchState.RUNNING}
    ),
    # Again `running`: a retried commit of the paid batch's id must never be refused.
    BatchState.RUNNING: frozenset(
        {BatchState.RUNNING, BatchState.FETCHING, BatchState.DONE, BatchState.FAILED}
    ),
    BatchState.FETCHING: frozenset({BatchState.DONE, BatchState.FAILED}),
    BatchState.WAITING: frozenset({BatchState.DONE}),
    BatchState.DONE: frozenset(),
    BatchState.FAILED: frozenset(),
}
"""Every state a batch may move to from each state; any other move is a defect."""


Verdict = tuple[str, str, bool | None]
"""(email, result, catch_all), as the API gives it and the cache keeps it."""


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
    key_id: str | None = None
    """The API key's id (`schedule.key_id`) the job buys through; None before schema 4."""
    base_url: str | None = None
    """The API root the job buys through."""


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
    adopts: int | None = None
    """For a `waiting` batch: the other job's batch whose verdicts it takes."""


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


@dataclass(frozen=True)
class Claim:
    """What checking a batch about to be POSTed against other jobs changed in it."""

    waiting: list[int] = field(default_factory=list)
    """New waiting batches, adopting emails another job has in flight."""
    changed: bool = False
    """Emails left the batch or gained a verdict: it must be read again, not POSTed as is."""


def job_id_for(
    input_path: str, fingerprint: str, email_column: str, *, sheet: str | None = None
) -> str:
    """A short stable id: the same file, content, column (and sheet) give the same job.

    `sheet` (`InputSpec.identity_sheet`) keeps two sheets of one workbook apart; None, the
    sheet read without --sheet, leaves the id as it was before sheets were told apart.

    >>> job_id_for("/d/b.xlsx", "f", "Email") != job_id_for("/d/b.xlsx", "f", "Email", sheet="B")
    True
    """
    parts = (input_path, fingerprint, email_column, *(() if sheet is None else ("sheet", sheet)))
    digest = hashlib.sha256("\0".join(parts).encode())
    return digest.hexdigest()[:12]

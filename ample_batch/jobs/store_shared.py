"""What both job stores (SQLite's `store.Store`, PostgreSQL's `pg_store.PgStore`) do the same
way on top of their own primitives: each store's root layer derives from `SharedStore` and
supplies `close`, `find_batch` and `_move` (the one transition, in its own SQL).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Self

from ..errors import StateFailed
from ..options import DEFAULT_CACHE_TTL
from .records import MOVES, Batch, BatchState, Job


def move_statement(
    where: object,
    batch_id: int,
    source: BatchState,
    state: BatchState,
    fields: dict[str, Any],
    *,
    shrink: int,
    now: float,
    mark: str,
) -> tuple[str, list[Any]]:
    """The UPDATE of a batch's move from `source` to `state` (with `fields` set and `shrink`
    emails off its size), in the backend's placeholder `mark`; StateFailed (a defect) for a
    move that MOVES does not allow. `where` names the store in that message.

    >>> move_statement("s", 7, BatchState.PLANNED, BatchState.SUBMITTING, {}, shrink=0,
    ...                now=1.0, mark="?")
    ('UPDATE batches SET state = ?, updated_at = ? WHERE id = ?', ['submitting', 1.0, 7])
    """
    if state not in MOVES[source]:
        raise StateFailed(
            f"{where}: batch {batch_id} cannot move from {source} to {state}; please report it"
        )
    values = {**fields, "state": state.value}
    values.setdefault("updated_at", now)
    assignments = [f"{name} = {mark}" for name in values]
    if shrink:
        assignments.append(f"size = size - {int(shrink)}")
    sql = f"UPDATE batches SET {', '.join(assignments)} WHERE id = {mark}"
    return sql, [*values.values(), batch_id]


def prune_threshold(now: float, run_ttl: float, jobs: Iterable[Job]) -> float:
    """The check time before which no cached verdict is of use any more (`prune_verdicts`).

    Kept: everything younger than the longest TTL in use (this run's, the default, or any
    stored job's: its `created_at` less its cutoff), and everything a job not done yet may
    reuse under its cutoff. The default TTL counts whatever this run's: one `--cache-ttl 0`
    run must not empty the cache that every later default run would use.

    >>> prune_threshold(100 * 86400.0, 0.0, []) / 86400
    70.0
    """
    ttls = [run_ttl, DEFAULT_CACHE_TTL]
    keep_from = now
    for job in jobs:
        if job.cache_cutoff != float("inf"):
            ttls.append(job.created_at - job.cache_cutoff)
            if job.state != "done":
                keep_from = min(keep_from, job.cache_cutoff)
    return min(now - max(ttls), keep_from)


class SharedStore(ABC):
    """The backend-independent part of a job store."""

    @abstractmethod
    def close(self) -> None:
        """Close the store's connections; what was committed stays."""

    @abstractmethod
    def find_batch(self, batch_id: int) -> Batch | None:
        """The batch, or None when no batch has this id."""

    @abstractmethod
    def _move(self, batch_id: int, state: BatchState, **fields: Any) -> None:
        """Move a batch to `state`, setting `fields`, in one transaction (see the stores)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, batch_id: int) -> Batch:
        found = self.find_batch(batch_id)
        if found is None:
            raise KeyError(f"no batch {batch_id}")
        return found

    def mark_fetching(
        self,
        batch_id: int,
        *,
        first_href: str,
        remote_status: str,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Terminal on the server: paging starts. Its `_errors` are kept for a resumed run."""
        self._move(
            batch_id,
            BatchState.FETCHING,
            next_href=first_href,
            remote_status=remote_status,
            error=json.dumps(list(errors)) if errors else None,
        )

    def remote_errors(self, batch_id: int) -> list[dict[str, Any]]:
        """The `_errors` the validation ended with, as saved by `mark_fetching`."""
        saved = self.batch(batch_id).error
        try:
            errors = json.loads(saved) if saved else []
        except ValueError:
            return []
        return errors if isinstance(errors, list) else []

    def fail(self, batch_id: int, *, error: str) -> None:
        """Give up on a batch: its emails without a verdict are written `failed`."""
        self._move(batch_id, BatchState.FAILED, next_href=None, error=error)

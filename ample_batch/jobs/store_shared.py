"""What both job stores (SQLite's `store.Store`, PostgreSQL's `pg_store.PgStore`) do the same
way on top of their own primitives: each store's root layer derives from `SharedStore` and
supplies `close`, `find_batch` and `_move` (the one transition, in its own SQL).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

from .records import Batch, BatchState


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

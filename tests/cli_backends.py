"""End-to-end suites on both state backends: `state_backend` is the SQLite state dir, or the
suite's PostgreSQL server through `--state-url` (a fresh database per test).

Register the fixture in a conftest with `from cli_backends import state_backend`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import batch_states

__all__ = ["StateBackend", "state_backend"]


@dataclass(frozen=True)
class StateBackend:
    """How a test's CLI runs keep their state, and how the test reads it back."""

    name: str
    url: str | None = None

    @property
    def args(self) -> list[str]:
        """What to add to each command: nothing for SQLite, `--state-url` for PostgreSQL."""
        return [] if self.url is None else ["--state-url", self.url]

    def batch_states(self, state_dir: Path) -> list[tuple[str, str | None]]:
        """The API batches' (state, next_href), oldest first, read without writing."""
        if self.url is None:
            return batch_states(state_dir)
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT state, next_href FROM ample_batch.batches WHERE source = 'api'"
                    " ORDER BY id"
                ).fetchall()
        except psycopg.Error:
            return []  # the schema is not created yet
        return [(state, href) for state, href in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> StateBackend:
    if request.param == "sqlite":
        return StateBackend("sqlite")
    return StateBackend("postgres", request.getfixturevalue("pg_url"))

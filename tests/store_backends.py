"""Job store tests on both backends: `backend` opens a SQLite store in a state dir, or a
PostgreSQL store in a schema of its own on the suite's server (tests/postgres_server.py), so
each test's PostgreSQL state is apart from every other's without a database per test.

tests/conftest.py registers the fixtures, with
`from store_backends import backend, jobs_database, postgres_server, store_backend`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from postgres_server import PostgresServer, postgres_server

from ample_batch.jobs.protocol import JobStore

__all__ = ["Backend", "backend", "jobs_database", "postgres_server", "store_backend"]

FAST_RECONNECT = (0.01, 0.05, 0.1)
"""The PostgreSQL store's waits between reconnects in tests: the same path, sooner."""


@dataclass
class Backend:
    """Stores of one backend for one test: `open()` the same state again, `open("b")`
    another one."""

    name: str
    tmp_path: Path
    url: str | None = None
    schema_prefix: str = ""
    opened: list[JobStore] = field(default_factory=list)

    def open(
        self, state: str = "state", *, clock: Callable[[], float] | None = None, **extra: Any
    ) -> JobStore:
        options: dict[str, Any] = {} if clock is None else {"clock": clock}
        if self.name == "sqlite":
            from ample_batch.jobs.sqlite.store import Store

            store: JobStore = Store(self.tmp_path / state, **options, **extra)
        else:
            from ample_batch.jobs.postgres.store import PgStore

            assert self.url is not None
            extra.setdefault("retry_waits", FAST_RECONNECT)
            store = PgStore(self.url, schema=self.schema(state), **options, **extra)
        self.opened.append(store)
        return store

    def schema(self, state: str = "state") -> str:
        return f"{self.schema_prefix}_{state}"

    def execute(self, sql: str, params: tuple[Any, ...] = (), state: str = "state") -> None:
        """Run `sql` on the store's database from another connection, as another process
        would (`?` placeholders, rewritten for PostgreSQL)."""
        if self.name == "sqlite":
            import sqlite3

            from ample_batch.jobs.sqlite.db import DB_NAME

            db = sqlite3.connect(self.tmp_path / state / DB_NAME)
            with db:
                db.execute(sql, params)
            db.close()
            return
        import psycopg

        assert self.url is not None
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {self.schema(state)}")
            conn.execute(sql.replace("?", "%s"), params)

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(scope="session")
def jobs_database(request: pytest.FixtureRequest) -> str:
    """One database for every PostgreSQL store test of this worker; a schema each."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = "jobs_" + secrets.token_hex(4)
    server.admin(f"CREATE DATABASE {name}")
    return server.url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend name; a test taking `backend` runs once for each."""
    return str(request.param)


@pytest.fixture
def backend(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Backend]:
    if store_backend == "sqlite":
        opened = Backend("sqlite", tmp_path)
    else:
        url = request.getfixturevalue("jobs_database")
        opened = Backend("postgres", tmp_path, url=url, schema_prefix="t" + secrets.token_hex(6))
    try:
        yield opened
    finally:
        opened.close()

"""Shared fixtures: the fake Amplemarket API served over loopback, a manual clock, and a real
PostgreSQL server (`pg_url`: a fresh database per test; tests/postgres_server.py).

The PostgreSQL fixtures are registered here, once, so that every directory's tests share one
server per worker; `state_backend` (tests/cli_backends.py) runs an end-to-end test on each
state backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from cli_backends import state_backend
from helpers import StartFake, fake_config
from postgres_server import pg_url, postgres_server
from store_backends import backend, jobs_database, store_backend

from ample_batch.api.transport import new_session
from ample_batch.fake.server import RunningFake, start_fake

# The job store on each backend in turn, for tests taking `backend` (tests/store_backends.py),
# and the whole state (`state_backend`, tests/cli_backends.py).
__all__ = [
    "backend",
    "jobs_database",
    "pg_url",
    "postgres_server",
    "state_backend",
    "store_backend",
]


@pytest.fixture
async def fake_api() -> AsyncIterator[StartFake]:
    """Start fakes with `await fake_api(credits=10, ...)`; all are closed afterwards."""
    running: list[RunningFake] = []

    async def start(**options: object) -> RunningFake:
        fake = await start_fake(fake_config(**options))
        running.append(fake)
        return fake

    yield start
    for fake in running:
        await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s

"""Shared fixtures: the fake Amplemarket API served over loopback, and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from helpers import StartFake, fake_config
from store_backends import backend, jobs_database, postgres_server, store_backend

from ample_batch.api.client import new_session
from ample_batch.fake.server import RunningFake, start_fake

# The job store on each backend in turn, for tests taking `backend` (tests/store_backends.py).
__all__ = ["backend", "jobs_database", "postgres_server", "store_backend"]


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

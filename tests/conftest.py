"""Shared fixtures: the fake Amplemarket API served over loopback, and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from helpers import KEY

from ample_batch.api.client import new_session
from ample_batch.fake.config import FakeConfig
from ample_batch.fake.server import RunningFake, start_fake


@pytest.fixture
async def fake_api() -> AsyncIterator[Callable[..., Awaitable[RunningFake]]]:
    """Start fakes with `await fake_api(credits=10, ...)`; all are closed afterwards."""
    running: list[RunningFake] = []

    async def start(**options: object) -> RunningFake:
        options.setdefault("api_key", KEY)
        fake = await start_fake(FakeConfig(**options))  # type: ignore[arg-type]
        running.append(fake)
        return fake

    yield start
    for fake in running:
        await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s

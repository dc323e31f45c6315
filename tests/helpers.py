"""Test helpers shared across test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import aiohttp

from ample_batch.client import RetryPolicy, ValidationClient

KEY = "test-key-7c1d2b3a"

# Fast but real: the client waits what the server says; only our own backoff is shortened.
FAST_RETRY = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05, default_poll=0.05)


class ManualClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_client(
    session: aiohttp.ClientSession, url: str, *, key: str = KEY, **kw: object
) -> ValidationClient:
    kw.setdefault("policy", FAST_RETRY)
    return ValidationClient(session, base_url=url, api_key=key, **kw)  # type: ignore[arg-type]

"""A faithful fake of the Amplemarket email-validation API, for tests, demos and `--simulate`.

Serve it in the running event loop and point a client at `fake.url`:

    >>> import asyncio, aiohttp
    >>> async def demo() -> int:
    ...     async with await start_fake(FakeConfig(api_key="k")) as fake:
    ...         headers = {"Authorization": "Bearer k"}
    ...         async with aiohttp.ClientSession(fake.url, headers=headers) as session:
    ...             body = {"emails": [{"email": "jsmith@example.com"}]}
    ...             async with session.post("/email-validations", json=body) as reply:
    ...                 return reply.status
    >>> asyncio.run(demo())
    202

The same fake runs as `ample-batch mock-server` (see `command.py`); `verdict_for` predicts
every verdict it gives, and `FakeApi.summary()` counts what a client did to it.
"""

from __future__ import annotations

from .app import FakeApi
from .config import FakeConfig, canonical_email, verdict_for
from .server import RunningFake, start_fake
from .summary import FakeSummary, RequestRecord

__all__ = [
    "FakeApi",
    "FakeConfig",
    "FakeSummary",
    "RequestRecord",
    "RunningFake",
    "canonical_email",
    "start_fake",
    "verdict_for",
]

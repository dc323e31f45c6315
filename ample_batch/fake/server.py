"""Serve a `FakeApi` on a local port inside the running event loop."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from .app import FakeApi
from .config import FakeConfig


@dataclass
class RunningFake:
    """A fake API being served: its base `url`, the `api` behind it, and `close()`."""

    url: str
    api: FakeApi
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop serving and drop open connections."""
        await self.runner.cleanup()

    async def __aenter__(self) -> RunningFake:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_fake(
    config: FakeConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningFake:
    """Start a fake API on `host:port` (0 = any free port) in the current event loop.

    async with await start_fake(FakeConfig(credits=500)) as fake:
        ...  # point the client at fake.url; assert on fake.api.summary()
    """
    api = FakeApi(config)
    # Closing does not wait out a request held by an injected latency (aiohttp's default: 60 s).
    runner = web.AppRunner(api.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningFake(f"http://{shown}:{bound_port}", api, runner)

"""The API side of a run: the key and base URL resolved, the HTTP session, the scheduler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp

from ..api.origin import check_base_url
from ..api.transport import new_session
from ..errors import InputError
from ..jobs.backend import State
from ..options import ApiOptions
from ..quota.scheduler import ScheduleConfig, Scheduler, key_id

T = TypeVar("T")


SIMULATED_KEY = "simulated-key"


def resolve_api(options: ApiOptions) -> tuple[str, str]:
    """The (base URL, key) to use, or InputError before anything is read or spent."""
    if options.simulate:
        return options.base_url, SIMULATED_KEY
    # A key read from a file or a Kubernetes secret often ends in a newline: never part of it.
    api_key = (options.api_key or "").strip()
    if not api_key:
        raise InputError(
            "no API key: set AMPLEMARKET_API_KEY or pass --api-key (or try --simulate)"
        )
    return check_base_url(options.base_url), api_key


@contextlib.asynccontextmanager
async def api_session(
    options: ApiOptions,
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, str]]:
    """An HTTP session, base URL and key; with --simulate, the fake API on loopback too."""
    base_url, api_key = resolve_api(options)
    async with contextlib.AsyncExitStack() as stack:
        if options.simulate:
            from ..fake.config import FakeConfig
            from ..fake.server import start_fake

            fake = await stack.enter_async_context(
                await start_fake(
                    FakeConfig(
                        api_key=SIMULATED_KEY,
                        emails_per_second=20000.0,
                        retry_after=0.5,
                        usage_limit=options.resolved_usage_limit,
                        rate_limit=options.resolved_rate_limit,
                    )
                )
            )
            base_url = fake.url
        session = await stack.enter_async_context(new_session())
        yield session, base_url, api_key


def scheduler_for(options: ApiOptions, state: State, api_key: str) -> Scheduler:
    """The shared ledgers for this key, in the state (already `state_of` the mode): the
    state dir's ledger file, or the state database's ledger tables."""
    return Scheduler(
        ScheduleConfig(
            usage_limit=options.resolved_usage_limit,
            rate_limit=options.resolved_rate_limit,
            ledger_dir=state.dir,
            state_url=state.url,
            state_schema=state.schema,
            key_id=key_id(api_key),
        )
    )

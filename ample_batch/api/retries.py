"""How the client retries: the policy, stamina's attempts, and waits a stop request ends.

    async for attempt in Retries(RetryPolicy(), stop):
        with attempt:
            ...  # send the request; raise a RetryableError to try again

Retry decisions are made by error type. Between attempts stamina waits (the server's
Retry-After, capped, or its own backoff); once the stop event is set, that wait ends at once
with RetryInterrupted, while a request already in flight is never cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina

from ..errors import RetryableError, RetryInterrupted, UsageLimited

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard the client tries before giving up on a request."""

    attempts: int = 6
    """Tries per request, the first included."""
    wait_initial: float = 0.5
    """First backoff, in seconds, when the server gave no Retry-After."""
    wait_max: float = 30.0
    """Longest backoff between tries when the server gave no Retry-After."""
    max_retry_after: float = 3600.0
    """Cap on any wait the server asks for, so a bad header cannot stall a run for days."""
    first_poll: float = 1.0
    """Seconds before the first poll when the server sends no Retry-After (it doubles)."""
    default_poll: float = 5.0
    """Longest wait between status polls when the server sends no Retry-After."""
    min_poll: float = 1.0
    """Wait between status polls when the server's Retry-After is 0, negative or past, so a
    broken header cannot turn polling into a busy loop."""
    timeout: float = 60.0
    """Seconds allowed for one HTTP request."""


class Retries:
    """Stamina's attempts at one request, with every wait before a retry cut short by `stop`.

    Tenacity sleeps inside the iterator's `__anext__`, before it hands out the next attempt,
    while a request only goes out in the body of `with attempt:`. So racing `__anext__`
    against the stop event ends a wait and never a request in flight (cutting a POST in
    flight would leave its batch's fate unknown, and resending it could pay twice).
    """

    def __init__(self, policy: RetryPolicy, stop: asyncio.Event | None, *, post: bool) -> None:
        self._policy = policy
        self._stop = stop
        self._post = post
        self._retrying_after: RetryableError | None = None
        self._started = False
        self._attempts = stamina.retry_context(
            on=self._should_retry,
            attempts=policy.attempts,
            timeout=None,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
        ).__aiter__()

    def __aiter__(self) -> Retries:
        return self

    async def __anext__(self) -> stamina.Attempt:
        if not self._started:
            self._started = True
            return await self._attempts.__anext__()  # the first attempt has nothing to wait for
        return await unless_stopped(self._attempts.__anext__(), self._stop, self._interrupted)

    def _should_retry(self, exc: Exception) -> bool | float:
        if not isinstance(exc, RetryableError) or isinstance(exc, RetryInterrupted):
            return False
        if self._post and isinstance(exc, UsageLimited):
            return False  # the scheduler re-admits the batch after the pause
        self._retrying_after = exc
        if exc.retry_after is not None and exc.retry_after > 0:
            return min(exc.retry_after, self._policy.max_retry_after)
        return True  # no usable hint (or "retry now"): our own backoff

    def _interrupted(self) -> RetryInterrupted:
        cause = self._retrying_after
        error = RetryInterrupted(
            f"stopped while waiting to retry after: {cause}; nothing was in flight"
        )
        error.__cause__ = cause  # what the caller may want to know: why it was waiting
        return error


async def unless_stopped(
    wait: Awaitable[T],
    stop: asyncio.Event | None,
    interrupted: Callable[[], RetryInterrupted],
) -> T:
    """Await `wait`, unless `stop` is set while it is still waiting: then raise
    `interrupted()`.

    A wait that is over at once is never cut, so a stop set earlier only ends real waits.
    """
    if stop is None:
        return await wait
    waiting = asyncio.ensure_future(wait)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        waiting.cancel()
        raise
    finally:
        stopped.cancel()
    if not waiting.done():
        waiting.cancel()
        raise interrupted()
    return waiting.result()


__all__ = ["Retries", "RetryPolicy", "unless_stopped"]

"""The async client for Amplemarket's email-validation endpoints.

    async with aiohttp.ClientSession() as session:
        client = ValidationClient(session, base_url="https://api.amplemarket.com", api_key=key)
        validation = await client.start(["ada@example.com", "bob@example.org"])
        validation = await client.wait(validation)
        async for page in client.pages(validation):
            ...

Every request first takes a slot from the throttle (the shared request ledger), so polls and
page fetches count against the rate limit like everything else, and is retried by error type
(`retries.py`). The request itself goes out through `transport.py`, the only module that meets
aiohttp's errors; `origin.py` keeps it, and the key with it, on the checked base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

import aiohttp
from yarl import URL

from ..errors import (
    BadRequest,
    InputError,
    NotFound,
    RateLimited,
    RetryableError,
    RetryInterrupted,
    SubmissionRefused,
    SubmissionUnknown,
    TransientError,
    UnsafeLink,
)
from . import DEFAULT_BASE_URL
from .origin import Origin
from .responses import (
    MISSING_STATUS,
    Headers,
    Page,
    Validation,
    error_for,
    header,
    parse_validation,
)
from .retries import Retries, RetryPolicy, unless_stopped
from .transport import Transport


class Throttle(Protocol):
    """What the client needs from the scheduler: a request slot, and a way to pause everyone."""

    async def request(self) -> Any: ...

    def answered(self, ticket: Any) -> None: ...

    def pause_requests(self, seconds: float) -> None: ...


class Unthrottled:
    """A throttle that never waits; for one-off scripts and tests of the client alone."""

    async def request(self) -> None:
        return None

    def answered(self, ticket: Any) -> None:
        return None

    def pause_requests(self, seconds: float) -> None:
        return None


class ValidationClient:
    """Start, poll, page through and cancel email validations.

    The session is the caller's: the client never opens or closes it. Once `stop` is set, a
    wait before a retry (backoff or Retry-After) or for a request slot ends at once with
    RetryInterrupted; a request already in flight is always seen through. The pause between
    status polls in `wait` is not cut: cancel the task that polls (nothing is lost).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str,
        throttle: Throttle | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stop: asyncio.Event | None = None,
    ) -> None:
        self._origin = Origin(base_url)
        self.base_url = self._origin.base_url
        self._transport = Transport(session, api_key=api_key, base_url=self.base_url)
        self._throttle = throttle or Unthrottled()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._stop = stop

    def __repr__(self) -> str:
        return f"ValidationClient(base_url={self.base_url!r})"

    # -- the four operations -------------------------------------------------------------

    async def start(
        self,
        emails: Sequence[str],
        *,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> Validation:
        """POST a batch. Retries only when the answer proves no batch was created.

        `admit`, if given, is awaited before every attempt in place of the throttle's request
        slot (the scheduler's `admit` takes the quota and that slot together), so a retried
        POST is admitted afresh, at the time it really goes out.

        Raises SubmissionUnknown when the request went out and its answer was lost: the batch
        may exist (and be charged), and only the caller can decide whether to resend.
        """
        if not emails:
            raise ValueError("start() needs at least one email")
        payload = {"emails": [{"email": e} for e in emails]}
        async for attempt in self._retrying(post=True):
            with attempt:
                if admit is not None:
                    await admit()
                status, headers, body = await self._send(
                    "POST", "/email-validations", payload, throttled=admit is None
                )
                if status in (200, 202):
                    try:
                        accepted = parse_validation(
                            body, headers, fallback_href=header(headers, "Location")
                        )
                    except TransientError:
                        # Accepted, but the answer is unreadable: resending could pay twice.
                        raise SubmissionUnknown(
                            f"the API accepted a batch ({status}) with an unreadable answer; "
                            "it may be running"
                        ) from None
                    if accepted.status == MISSING_STATUS:
                        # A 202 is the acceptance itself: the batch waits to start.
                        accepted = dataclasses.replace(accepted, status="queued")
                    return self._bounded(accepted)
                if status == 404:
                    # The collection itself is missing: not the API, or not this version of it.
                    raise InputError(
                        f"{self.base_url}/email-validations does not exist (404); check --base-url"
                    )
                self._raise_for(status, headers, body, post=True)
        raise AssertionError("unreachable")  # pragma: no cover

    async def check_key(self) -> None:
        """Raise Unauthorized now if the key is rejected; costs one request and no credit.

        There is no documented account endpoint for email validation, so this asks for a
        validation that cannot exist: 404 means the key was accepted.
        """
        try:
            await self.get("/email-validations/00000000-0000-0000-0000-000000000000")
        except NotFound as exc:
            if exc.errors:
                return
            # A bare 404 is not the API's own answer: most likely a wrong --base-url.
            raise InputError(
                f"{self.base_url} does not answer like the Amplemarket API (a 404 without "
                "an error body); check --base-url"
            ) from None

    async def get(self, href: str) -> Validation:
        """GET a validation (or one page of its results) by href, retrying transient failures."""
        async for attempt in self._retrying():
            with attempt:
                status, headers, body = await self._send("GET", href)
                if status == 200:
                    return self._bounded(parse_validation(body, headers, fallback_href=href))
                self._raise_for(status, headers, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait(
        self,
        validation: Validation,
        *,
        on_poll: Callable[[Validation], Awaitable[None] | None] | None = None,
    ) -> Validation:
        """Poll until the validation is terminal, honouring each Retry-After (bounded to
        `policy.min_poll`..`policy.max_retry_after` by `get`).

        Termination is decided from `status`, never from the header. Returns the terminal
        snapshot, whose `results` are the first page.
        """
        unguided = 0
        while not validation.terminal:
            delay = validation.retry_after
            if delay is None:
                # No hint (the 202 carries none): start soon, back off to the default interval.
                delay = min(self.policy.default_poll, self.policy.first_poll * 2**unguided)
                unguided += 1
            # Capped here too: a resumed batch's wait comes from the store, not from `get`.
            await self._sleep(min(delay, self.policy.max_retry_after))
            validation = await self.get(validation.href)
            if on_poll is not None:
                maybe = on_poll(validation)
                if maybe is not None:
                    await maybe
        return validation

    async def pages(self, start: Validation | str) -> AsyncIterator[Page]:
        """Every page of a terminal validation's results, following `_links.next.href`.

        Pass the terminal Validation (its first page is reused, not fetched again) or the href
        of a page to resume from. A repeated href is an UnsafeLink, never a loop.
        """
        if isinstance(start, Validation):
            page = Page(start.results, start.next_href)
            seen = {start.href}
        else:
            snapshot = await self.get(start)
            page = Page(snapshot.results, snapshot.next_href)
            seen = {start}
        while True:
            yield page
            if page.next_href is None or not page.results:
                return
            if page.next_href in seen:
                raise UnsafeLink(f"the API repeated the page link {page.next_href!r}; stopped")
            seen.add(page.next_href)
            snapshot = await self.get(page.next_href)
            page = Page(snapshot.results, snapshot.next_href)

    async def cancel(self, href_or_id: str) -> Validation:
        """PATCH a validation to `canceled`, then return what the server now says it is.

        A 4xx means "not cancellable" (already finished, say); the current state is returned.
        """
        href = href_or_id if "/" in href_or_id else f"/email-validations/{href_or_id}"
        # A BadRequest means not cancellable (already finished, say): the GET tells what it is.
        with contextlib.suppress(BadRequest):
            async for attempt in self._retrying():
                with attempt:
                    status, headers, body = await self._send("PATCH", href, {"status": "canceled"})
                    if status != 200:
                        self._raise_for(status, headers, body)
        return await self.get(href)

    # -- plumbing ------------------------------------------------------------------------

    def _bounded(self, validation: Validation) -> Validation:
        """The validation with its Retry-After bounded: at most the policy's cap, so a bad
        header cannot stall a run for a day; and for a validation still running, at least
        `min_poll` when the server said 0 or a time already past, so polling never spins."""
        wait = validation.retry_after
        if wait is None:
            return validation
        wait = min(wait, self.policy.max_retry_after)
        if wait <= 0 and not validation.terminal:
            wait = self.policy.min_poll
        return dataclasses.replace(validation, retry_after=wait)

    def _retrying(self, *, post: bool = False) -> Retries:
        """The attempts at one request: retried by type, waiting what the server asked for
        when it did, and giving up the wait as soon as the stop event is set."""
        return Retries(self.policy, self._stop, post=post)

    def url_for(self, href: str) -> URL:
        """The absolute URL of an API href; refuses any other origin (the key goes with it)."""
        return self._origin.url_for(href)

    async def _send(
        self, method: str, href: str, payload: Any = None, *, throttled: bool = True
    ) -> tuple[int, Headers, Any]:
        url = self.url_for(href)
        if not throttled:
            return await self._transport.exchange(method, url, payload, timeout=self.policy.timeout)
        # A 429 elsewhere may have paused every request for as long as its Retry-After.
        ticket = await unless_stopped(self._throttle.request(), self._stop, _slot_interrupted)
        try:
            return await self._transport.exchange(method, url, payload, timeout=self.policy.timeout)
        finally:
            # Stamped again at the answer, which is never before the server counted it.
            self._throttle.answered(ticket)

    def _raise_for(
        self, status: int, headers: Headers, body: Any, *, post: bool = False
    ) -> NoReturn:
        error = error_for(status, headers, body, post=post)
        if isinstance(error, RetryableError) and error.retry_after is not None:
            error.retry_after = min(error.retry_after, self.policy.max_retry_after)
        if isinstance(error, (RateLimited, SubmissionRefused)) and error.retry_after:
            # Every request waits, not just this one. A 429 to a POST may be the rate limit
            # too (its code is not documented), so it pauses requests as well as the batch.
            self._throttle.pause_requests(error.retry_after)
        raise error


def _slot_interrupted() -> RetryInterrupted:
    return RetryInterrupted("stopped while waiting for a request slot; nothing was in flight")


__all__ = [
    "DEFAULT_BASE_URL",
    "RetryPolicy",
    "Throttle",
    "Unthrottled",
    "ValidationClient",
]

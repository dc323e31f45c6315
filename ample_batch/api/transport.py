"""One HTTP exchange with the API over the caller's session, the key in its header: the only
place aiohttp's errors are met, each translated into the tree in `errors.py`.

    async with new_session() as session:
        transport = Transport(session, api_key=key, base_url="https://api.amplemarket.com")
        status, headers, body = await transport.exchange("GET", url, None, timeout=30.0)

No retries and no request slots here: those are the client's (`client.py`, `retries.py`).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from ..errors import InputError, SubmissionUnknown, TransientError
from .responses import Headers


def new_session() -> aiohttp.ClientSession:
    """An HTTP session fit for the API: aiohttp's silent resend of idempotent requests over a
    dropped keep-alive connection is turned off, because that resend would bypass the request
    ledger (every try must take a rate-limit slot; our own retries do).

        async with new_session() as session:
            client = ValidationClient(session, api_key=key)
    """
    session = aiohttp.ClientSession()
    # No public switch exists for this (aiohttp 3.14); the attribute is read per request.
    session._retry_connection = False
    return session


class _Secret:
    """Holds the API key so that no repr, vars() dump or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"


class Transport:
    """Sends one request and reads its whole answer; the session is the caller's."""

    def __init__(self, session: aiohttp.ClientSession, *, api_key: str, base_url: str) -> None:
        if not api_key or any(ord(c) < 0x21 or ord(c) > 0x7E for c in api_key):
            raise InputError(
                "the API key is empty or holds spaces or control characters; check "
                "AMPLEMARKET_API_KEY (a stray newline from a file, say)"
            )
        self._session = session
        self._api_key = _Secret(api_key)
        # Named in messages only: `url` is always an absolute URL on this origin already.
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"Transport(base_url={self._base_url!r})"

    async def exchange(
        self, method: str, url: URL, payload: Any, *, timeout: float
    ) -> tuple[int, Headers, Any]:
        """The answer's status, headers and JSON body (None when empty or not JSON).

        Raises TransientError when the request failed on the way, or SubmissionUnknown when a
        POST was sent and its answer lost (the batch may exist).
        """
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "Accept": "application/json",
        }
        data = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(payload).encode()
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                # A case-insensitive copy: proxies and HTTP/2 gateways lower-case the names.
                resp_headers = response.headers.copy()
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            # Refused or unresolvable: the request never left, so even a POST is safe to resend.
            raise TransientError(f"cannot reach {self._base_url}: {exc.os_error}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            what = type(exc).__name__
            if method == "POST":
                raise SubmissionUnknown(
                    f"the connection was lost after sending a batch ({what}); "
                    "it may have been accepted"
                ) from None
            raise TransientError(f"{method} {url.path} failed: {what}") from None
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        return status, resp_headers, body


__all__ = ["Transport", "new_session"]

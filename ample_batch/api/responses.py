"""What the API answers, parsed: validations, results, Retry-After, and errors by type.

Pure functions over status codes, headers and JSON bodies (no HTTP here), so the mapping from
an answer to our exception tree is decided in one place, by status and `_errors[].code`, never
by message text.

    >>> parse_retry_after("2")
    2.0
    >>> type(error_for(401, {}, {"_errors": [{"code": "unauthorized"}]})).__name__
    'Unauthorized'
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ApiError,
    BadRequest,
    InsufficientCredits,
    NotFound,
    RateLimited,
    SubmissionRefused,
    SubmissionUnknown,
    TransientError,
    Unauthorized,
    UnsafeLink,
    UsageLimited,
    ValidationFailed,
)

Headers = Mapping[str, str]
"""Response headers. Names are matched in any case (see `header`): proxies and HTTP/2
gateways lower-case them."""


TERMINAL_STATUSES = frozenset({"completed", "canceled", "error"})


MISSING_STATUS = ""
"""A validation's `status` when the answer had none (it is required): unknown, never taken
for `queued`, which would poll for ever."""


@dataclass(frozen=True)
class Result:
    """One verdict, as the API returned it."""

    email: str
    result: str
    catch_all: bool | None


@dataclass(frozen=True)
class Validation:
    """A snapshot of one email validation on the server."""

    id: str
    status: str
    href: str
    results: list[Result] = field(default_factory=list)
    next_href: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Page:
    """One page of results and the href of the page after it (None on the last page)."""

    results: list[Result]
    next_href: str | None


def header(headers: Headers, name: str) -> str | None:
    """The value of header `name`, whatever the case of its name in `headers`.

    The client passes aiohttp's case-insensitive copy; a plain dict (a test, a caller of these
    pure functions) is searched by hand rather than trusted to match the exact spelling.
    """
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def parse_retry_after(value: str | None, server_date: str | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Always finite and never negative: garbage, `nan` and `1e999` (infinity) give None, a
    negative or past value 0. Bounding the wait is the caller's (its policy knows the cap).
    An HTTP-date is measured against the response's own `Date` header when there is one, so a
    server whose clock disagrees with ours still gets the wait it meant.
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        reference = _http_date(server_date) if server_date else None
        seconds = when - (time.time() if reference is None else reference)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _http_date(text: str | None) -> float | None:
    """An HTTP-date as a timestamp; None for anything a calendar or a timestamp cannot hold."""
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def _parse_results(items: Any) -> list[Result]:
    results = []
    for item in items or []:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            continue
        catch_all = item.get("catch_all")
        results.append(
            Result(
                email=item["email"],
                result=str(item.get("result") or "unknown"),
                catch_all=catch_all if isinstance(catch_all, bool) else None,
            )
        )
    return results


def _link(body: dict[str, Any], name: str) -> str | None:
    link = (body.get("_links") or {}).get(name)
    href = link.get("href") if isinstance(link, dict) else None
    return href if isinstance(href, str) and href else None


def parse_validation(body: Any, headers: Headers, *, fallback_href: str | None) -> Validation:
    """A Validation from a 200/202 body; TransientError if the body is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), (str, int)):
        raise TransientError("the API answered with a body that is not a validation")
    vid = str(body["id"])
    href = _link(body, "self") or fallback_href or f"/email-validations/{vid}"
    errors = body.get("_errors")
    status = body.get("status")
    return Validation(
        id=vid,
        status=status if isinstance(status, str) and status else MISSING_STATUS,
        href=href,
        results=_parse_results(body.get("results")),
        next_href=_link(body, "next"),
        errors=errors if isinstance(errors, list) else [],
        retry_after=parse_retry_after(header(headers, "Retry-After"), header(headers, "Date")),
    )


def error_for(status: int, headers: Headers, body: Any, *, post: bool = False) -> ApiError:
    """The exception for an unsuccessful answer, decided by status and `_errors[].code`.

    `post` marks the answer to a POST. There, a 5xx (or 408/425) is ambiguous with or without
    an error body, since the API may have failed after accepting the batch, so it becomes
    SubmissionUnknown; and any 429 refuses that batch (SubmissionRefused, a UsageLimited),
    whatever its code, since the code for a usage refusal is not documented.
    """
    errors = body.get("_errors") if isinstance(body, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    codes = {str(e.get("code")) for e in errors}
    retry_after = parse_retry_after(header(headers, "Retry-After"), header(headers, "Date"))
    detail = _details(str(e.get("detail") or e.get("title") or e.get("code")) for e in errors)
    suffix = f": {detail}" if detail else ""
    kwargs: dict[str, Any] = {"status": status, "errors": errors}
    if "insufficient_credits" in codes or status == 402:
        return InsufficientCredits(
            f"the account is out of email credits{suffix}; top up, then run again", **kwargs
        )
    if status in (401, 403) or "unauthorized" in codes:
        return Unauthorized(
            "the API key was rejected; check AMPLEMARKET_API_KEY or --api-key", **kwargs
        )
    if status == 429:
        if "usage_limit_exceeded" in codes:
            return UsageLimited(
                f"the email usage limit is reached{suffix}", retry_after=retry_after, **kwargs
            )
        if post:
            return SubmissionRefused(
                f"the API refused a batch with 429 (too many requests){suffix}",
                retry_after=retry_after,
                **kwargs,
            )
        return RateLimited(f"too many requests{suffix}", retry_after=retry_after, **kwargs)
    if status >= 500 or status in (408, 425):
        if post:
            # Even with an error body (the API's own error example is a 500), the batch may
            # have been created before the failure: resending could pay twice.
            return SubmissionUnknown(
                f"the API answered {status} to a batch{suffix}; it may have been accepted",
                **kwargs,
            )
        return TransientError(
            f"the API answered {status}{suffix}", retry_after=retry_after, **kwargs
        )
    if status == 404:
        return NotFound(f"the API does not know this validation{suffix}", **kwargs)
    if 300 <= status < 400:
        return UnsafeLink(f"the API answered with a redirect ({status}); not followed")
    return BadRequest(f"the API refused the request ({status}){suffix}", **kwargs)


def failed_validation(validation: Validation) -> ValidationFailed | InsufficientCredits:
    """The exception describing why a validation ended in `error`."""
    codes = {str(e.get("code")) for e in validation.errors}
    detail = _details(str(e.get("detail") or e.get("code")) for e in validation.errors)
    if "insufficient_credits" in codes:
        return InsufficientCredits(
            f"the account ran out of email credits during a validation: {detail}",
            errors=validation.errors,
        )
    return ValidationFailed(
        f"validation {validation.id} ended in error: {detail or 'no detail'}",
        errors=validation.errors,
    )


def _details(texts: Iterable[str]) -> str:
    """The API's error details as one clause of our message: `a; b`, without their full
    stops ("Something went wrong.; top up" reads as a typo)."""
    return "; ".join(text.strip().rstrip(".") for text in texts)

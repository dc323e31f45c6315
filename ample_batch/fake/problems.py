"""Request checks of the fake API and the `_errors` they produce, free of any HTTP library.

Each check either returns the parsed value or raises `FakeProblem`, which `app.py` turns into
a JSON:API-style error body: `{"_errors": [{"status", "code", "title", "detail", "source"}],
"object": "error"}`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_EMAILS_PER_REQUEST = 100_000


DEFAULT_PAGE_SIZE = 100


MAX_PAGE_SIZE = 100


TITLES = {
    "internal_server_error": "Internal Server Error",
    "insufficient_credits": "Insufficient Credits",
    "unsupported_value": "Unsupported Value",
    "missing_field": "Missing Field",
    "unauthorized": "Unauthorized",
    "not_found": "Not Found",
    "method_not_allowed": "Method Not Allowed",
    "rate_limit_exceeded": "Too Many Requests",
    "usage_limit_exceeded": "Usage Limit Exceeded",
}


# Deliberately loose, like most servers' `format: email`: one @, no spaces, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def error_object(
    code: str, detail: str, *, status: int | None = None, source: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One `_errors` entry, with the code's stable title."""
    error: dict[str, Any] = {}
    if status is not None:
        error["status"] = str(status)
    error |= {"code": code, "title": TITLES.get(code, code), "detail": detail}
    if source is not None:
        error["source"] = dict(source)
    return error


@dataclass
class FakeProblem(Exception):
    """An error response: HTTP `status` and one or more `_errors` entries."""

    status: int
    errors: list[dict[str, Any]]
    retry_after: float | None = None
    flags: tuple[str, ...] = field(default=())

    @classmethod
    def one(
        cls,
        status: int,
        code: str,
        detail: str,
        *,
        source: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        flags: tuple[str, ...] = (),
    ) -> FakeProblem:
        """A problem with a single error entry."""
        error = error_object(code, detail, status=status, source=source)
        return cls(status, [error], retry_after=retry_after, flags=flags)

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"_errors": self.errors, "object": "error"}


def _bad_value(detail: str, pointer: str) -> FakeProblem:
    return FakeProblem.one(400, "unsupported_value", detail, source={"pointer": pointer})


def parse_submission(body: Any, rejects: Collection[str] = frozenset()) -> list[str]:
    """The emails of a POST /email-validations body `{"emails": [{"email": "..."}]}`.

    Every malformed item, and every email in `rejects`, is reported, each with its own
    `/emails/<n>/email` pointer, so a client can drop them all and resubmit once.
    """
    if not isinstance(body, dict):
        raise _bad_value("The request body must be a JSON object", "")
    for key in body:
        if key != "emails":
            raise _bad_value(f"Unknown field {key!r}", f"/{key}")
    if "emails" not in body:
        raise FakeProblem.one(
            400, "missing_field", "Field 'emails' is required", source={"pointer": "/emails"}
        )
    items = body["emails"]
    if not isinstance(items, list):
        raise _bad_value("Field 'emails' must be an array", "/emails")
    if len(items) > MAX_EMAILS_PER_REQUEST:
        raise _bad_value(f"Number of emails exceeds {MAX_EMAILS_PER_REQUEST} limit", "/emails")
    if not items:
        raise _bad_value("At least one email is required", "/emails")
    emails: list[str] = []
    errors: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        email = item.get("email") if isinstance(item, dict) and item.keys() == {"email"} else None
        if (
            isinstance(email, str)
            and _EMAIL.match(email.strip())
            and email.strip().lower() not in rejects
        ):
            emails.append(email)
            continue
        detail = (
            f"Invalid email {email!r}"
            if isinstance(email, str)
            else 'Each item must be an object {"email": <string>} with no other fields'
        )
        errors.append(
            error_object(
                "unsupported_value", detail, status=400, source={"pointer": f"/emails/{n}/email"}
            )
        )
    if errors:
        raise FakeProblem(400, errors)
    return emails


def parse_cancel(body: Any) -> None:
    """Accept exactly `{"status": "canceled"}` (the only PATCH the API documents)."""
    if not isinstance(body, dict):
        raise _bad_value("The request body must be a JSON object", "")
    for key in body:
        if key != "status":
            raise _bad_value(f"Unknown field {key!r}", f"/{key}")
    if body.get("status") != "canceled":
        raise _bad_value("Field 'status' only supports the value 'canceled'", "/status")


@dataclass(frozen=True)
class PageQuery:
    """The `page[...]` query parameters of a GET."""

    size: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    before: str | None = None


def parse_page_query(query: Mapping[str, str]) -> PageQuery:
    """`page[size]` (1..100, default 100), `page[after]`, `page[before]`."""
    size = DEFAULT_PAGE_SIZE
    if "page[size]" in query:
        text = query["page[size]"]
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
            raise FakeProblem.one(
                400,
                "unsupported_value",
                f"page[size] must be a whole number from 1 to {MAX_PAGE_SIZE}, got {text!r}",
                source={"parameter": "page[size]"},
            )
        size = int(text)
    return PageQuery(size, query.get("page[after]"), query.get("page[before]"))


def rate_limited(retry_after: float, *, flag: str) -> FakeProblem:
    """The 429 for too many requests (`flag` says whether the limit or a fault caused it)."""
    return FakeProblem.one(
        429,
        "rate_limit_exceeded",
        "Too many requests; wait for Retry-After seconds before trying again",
        retry_after=retry_after,
        flags=(flag,),
    )


def usage_limited(retry_after: float) -> FakeProblem:
    """The 429 for too many emails submitted in the usage window."""
    return FakeProblem.one(
        429,
        "usage_limit_exceeded",
        "Too many emails submitted in the usage window; retry after Retry-After seconds",
        source={"pointer": "/emails"},
        retry_after=retry_after,
        flags=("usage_limited",),
    )

"""The fake API's knobs (`FakeConfig`) and its deterministic verdicts (`verdict_for`).

>>> verdict_for("Jane.Doe+news@Example.com") == verdict_for("jane.doe@example.com")
True
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..limits import Limit

CreditsMode = Literal["reject", "async"]


@dataclass(frozen=True, kw_only=True)
class FakeConfig:
    """How the fake Amplemarket API behaves: limits, credits, speed and injected faults.

    Probabilities are drawn from `random.Random(seed)`, so a run is repeatable; set one to
    1.0 to make that fault certain.
    """

    api_key: str = "test-key"
    """Bearer token accepted; anything else gets 401 `unauthorized`."""
    seed: int = 0
    """Verdicts are a deterministic hash of (seed, email); faults draw from Random(seed)."""
    emails_per_second: float = 2000.0
    """Processing speed once a validation leaves the queue."""
    queue_seconds: float = 0.0
    """How long a validation stays `queued` before `processing`."""
    retry_after: float = 1.0
    """Retry-After sent while queued/processing; fractions are sent as e.g. "0.2"."""
    retry_after_http_date: bool = False
    """Send every Retry-After as an HTTP-date instead of seconds."""
    retry_after_text: str | None = None
    """Sent verbatim as every Retry-After value, e.g. "86400", "1e999", "nan", "-5" (a broken
    server); the fake itself still paces validations and 429s by `retry_after`."""
    lower_case_headers: bool = False
    """Send every response header name lower-cased (`retry-after`, `location`), as proxies and
    HTTP/2 gateways do."""
    clock_skew: float = 0.0
    """Seconds added to the server's wall clock (Date header, HTTP-dates)."""
    rate_limit: Limit | None = None
    """Requests per rolling window, all endpoints; over it -> 429 + Retry-After."""
    usage_limit: Limit | None = None
    """Emails submitted per rolling window; over it -> 429 `usage_limit_exceeded`."""
    credits: int | None = None
    """Email credit balance; None = unlimited."""
    credits_mode: CreditsMode = "reject"
    """reject: POST over balance -> 402; async: accepted, errors when the balance runs out."""
    normalise_results: bool = True
    """Return emails lower-cased, +tag stripped; inputs that collapse share one result."""
    upper_case_results: bool = False
    """Return emails in UPPER case (a fault to test matching)."""
    fail_5xx: float = 0.0
    """Probability of a 500 `internal_server_error`; a POST so answered creates nothing."""
    fail_5xx_after_accept: float = 0.0
    """Probability a POST is carried out (the batch created and charged) and then answered
    500 `internal_server_error` all the same, as a failing proxy or API node would."""
    drop: float = 0.0
    """Probability the connection is dropped unanswered; a POST's batch IS created first."""
    spurious_429: float = 0.0
    """Probability of a 429 (with Retry-After) not caused by any limit."""
    batch_error: float = 0.0
    """Probability a validation ends `error` halfway; results for the processed half remain."""
    latency: float = 0.0
    """Seconds added to every response."""
    rejects: frozenset[str] = frozenset()
    """Emails refused with 400 `unsupported_value`, as if the API's syntax rule were stricter
    than the client's (compared after trimming and lower-casing)."""
    not_found_polls: int = 0
    """The first this many GETs of each validation answer 404, as a replica that has not yet
    seen a new batch would."""
    get_fault: int | None = None
    """HTTP status (402, 400, 410, 302, ...) answered to every GET of a validation."""
    page_fault: int | None = None
    """HTTP status answered to every GET of a results page after the first (one carrying a
    `page[after]` or `page[before]` cursor), as when a cursor has expired."""
    post_fault: int | None = None
    """HTTP status answered to every POST, its `_errors` naming no item (a 400 for the batch
    as a whole, say); nothing is created."""
    unknown_status: str | None = None
    """A status outside the documented ones, reported by every validation until terminal;
    an empty string leaves the (required) `status` field out instead."""
    arrival_jitter: float = 0.0
    """Up to this many seconds (seeded random) before a request counts as arrived, as varying
    network latency on the way in would make it."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic clock for all limits and progress; inject one to make tests time-free."""


RESULTS = ("deliverable", "risky", "unknown", "undeliverable")


# Cumulative percentages: 60 deliverable, 15 risky, 10 unknown, 15 undeliverable.
_THRESHOLDS = (60, 75, 85, 100)


_CATCH_ALL_PERCENT = 20


def canonical_email(email: str) -> str:
    """Trimmed, lower-cased, `+tag` stripped: `" Bar+x@Ex.com "` -> `"bar@ex.com"`."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return domain
    base = local.split("+", 1)[0]
    return f"{base or local}@{domain}"


def verdict_for(email: str, seed: int = 0) -> tuple[str, bool]:
    """The fake's `(result, catch_all)` for `email`, the same in every run with this seed.

    Only the canonical form counts (trimmed, lower-cased, `+tag` stripped), so every spelling
    of one address gets one verdict whatever the result-normalisation switches say. Roughly
    60% deliverable, 15% risky, 10% unknown, 15% undeliverable; about 20% catch-all.

        >>> verdict_for("jsmith@example.com", seed=0)[0] in RESULTS
        True
    """
    digest = hashlib.sha256(f"{seed}\0{canonical_email(email)}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    result = next(r for r, limit in zip(RESULTS, _THRESHOLDS, strict=True) if bucket < limit)
    catch_all = int.from_bytes(digest[8:16], "big") % 100 < _CATCH_ALL_PERCENT
    return result, catch_all


def returned_email(email: str, config: FakeConfig) -> str:
    """The address the fake reports for a submitted `email`, per the normalisation switches."""
    out = canonical_email(email) if config.normalise_results else email
    return out.upper() if config.upper_case_results else out

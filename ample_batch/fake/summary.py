"""What the fake API saw: the request log and the summary tests assert limits against."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .state import FakeState

DEFAULT_RATE_PERIOD = 60.0


DEFAULT_USAGE_PERIOD = 3600.0


EARLY_POLL_TOLERANCE = 0.05


@dataclass(frozen=True)
class RequestRecord:
    """One request: when it arrived (fake clock), what it asked, how it was answered.

    `status` is 0 when the connection was dropped without an answer. `flags` name what else
    happened: `rate_limited`, `usage_limited`, `spurious_429`, `fail_5xx`, `dropped`,
    `early_poll`, `fail_5xx_after_accept`.
    """

    time: float
    method: str
    path: str
    status: int
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "flags": list(self.flags)}


@dataclass(frozen=True)
class FakeSummary:
    """Counters over the whole life of one fake API, for asserting a client's behaviour."""

    requests: int
    """Requests answered or dropped (admin endpoints excluded)."""
    requests_by_status: dict[int, int]
    """Request count per HTTP status; 0 = dropped without an answer."""
    requests_by_flag: dict[str, int]
    """Request count per `RequestRecord` flag (faults injected, limits hit, early polls)."""
    rate_limited: int
    """429s caused by the request-rate limit (not the spurious ones)."""
    usage_limited: int
    """429s caused by the usage limit."""
    credits_spent: int
    """Credits charged so far (one per processed result)."""
    credits_remaining: int | None
    """The balance left; None = unlimited."""
    emails_submitted: int
    """Emails in POSTs that created a validation, duplicates included."""
    emails_submitted_twice: int
    """Distinct emails (trimmed, lower-cased) that appear in more than one created POST."""
    emails_charged_twice: int
    """Distinct emails (trimmed, lower-cased) charged more than once: the number that matters."""
    peak_requests_in_window: int
    """Most accepted requests in any rolling rate-limit window (60 s when there is none)."""
    peak_emails_in_window: int
    """Most emails accepted by POSTs in any rolling usage window (1 h when there is none)."""
    early_polls: int
    """Status GETs sent before the Retry-After last given for that validation expired."""
    validations: int
    """Validations created."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status keys become strings when dumped)."""
        return asdict(self)


def peak_in_window(events: Iterable[tuple[float, int]], period: float) -> int:
    """The largest total weight of events inside any window `(t - period, t]`.

    >>> peak_in_window([(0, 1), (1, 1), (2, 1), (3, 1)], period=2.0)
    2
    """
    ordered = sorted(events)
    best = total = first = 0
    for at, weight in ordered:
        total += weight
        while ordered[first][0] <= at - period:
            total -= ordered[first][1]
            first += 1
        best = max(best, total)
    return best


def summarise(state: FakeState, log: list[RequestRecord]) -> FakeSummary:
    """Build the summary from the model and the request log."""
    config = state.config
    by_flag = Counter(flag for record in log for flag in record.flags)
    rate_period = config.rate_limit.period if config.rate_limit else DEFAULT_RATE_PERIOD
    usage_period = config.usage_limit.period if config.usage_limit else DEFAULT_USAGE_PERIOD
    accepted = [(r.time, 1) for r in log if "rate_limited" not in r.flags]
    return FakeSummary(
        requests=len(log),
        requests_by_status=dict(sorted(Counter(r.status for r in log).items())),
        requests_by_flag=dict(sorted(by_flag.items())),
        rate_limited=by_flag["rate_limited"],
        usage_limited=by_flag["usage_limited"],
        credits_spent=state.credits_spent,
        credits_remaining=state.balance,
        emails_submitted=sum(weight for _, weight in state.submissions),
        emails_submitted_twice=sum(1 for n in state.submitted_keys.values() if n > 1),
        emails_charged_twice=sum(1 for n in state.charged_keys.values() if n > 1),
        peak_requests_in_window=peak_in_window(accepted, rate_period),
        peak_emails_in_window=peak_in_window(state.submissions, usage_period),
        early_polls=by_flag["early_poll"],
        validations=len(state.validations),
    )

"""The fake API's pure model: validations, their progress, credits and rolling windows.

Nothing here touches HTTP or sleeps. Progress is computed lazily from `config.clock()`
whenever a request arrives (`advance`), so a test that moves an injected clock forward sees
validations move on without any background task.

Modelling choices where the API docs are silent:

- Validations process concurrently, each at `emails_per_second`, in submission order; the
  result of an email exists once it has been processed (and charged).
- Inputs that map to the same returned email share one result and one credit.
- In `reject` credit mode a POST reserves its emails: it is refused (402) unless the balance
  minus what running validations will still consume covers it.
- In `async` credit mode validations are charged as they go, oldest first; one that cannot
  be charged for its next email ends `error` with code `insufficient_credits`.
"""

from __future__ import annotations

import math
import os
import random
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ..limits import Limit
from .config import FakeConfig, returned_email
from .problems import FakeProblem, PageQuery, error_object, usage_limited

TERMINAL = frozenset({"completed", "canceled", "error"})


_EPSILON = 1e-9


class RollingWindow:
    """Weighted events in a rolling window: at most `limit.count` units in any `limit.period`."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.limit.period:
            self._total -= self._events.popleft()[1]

    def wait(self, weight: int, now: float) -> float:
        """Seconds until `weight` more units fit (0 if they fit now; inf if they never will)."""
        if weight > self.limit.count:
            return math.inf
        self._prune(now)
        excess = self._total + weight - self.limit.count
        if excess <= 0:
            return 0.0
        for at, units in self._events:
            excess -= units
            if excess <= 0:
                return max(at + self.limit.period - now, 0.0)
        return math.inf

    def add(self, now: float, weight: int = 1) -> None:
        """Record `weight` units used at `now`."""
        self._events.append((now, weight))
        self._total += weight


@dataclass
class Entry:
    """One result row: the email as returned and the trimmed, lower-cased inputs behind it."""

    email: str
    keys: set[str]


@dataclass
class Validation:
    """One batch, from POST until it is completed, canceled or errored."""

    id: str
    start: float
    entries: list[Entry]
    error_at: int | None = None
    processed: int = 0
    final: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    poll_not_before: float | None = None
    """When the last Retry-After given for this validation expires (None once terminal)."""
    _sorted: list[Entry] = field(default_factory=list)
    _sorted_emails: list[str] = field(default_factory=list)

    @property
    def href(self) -> str:
        """The relative URL of this validation (`Location`, `_links.self.href`)."""
        return f"/email-validations/{self.id}"

    def status(self, now: float) -> str:
        """`queued`, `processing`, or the terminal status."""
        if self.final is not None:
            return self.final
        return "queued" if now <= self.start else "processing"

    def finish(self, status: str, errors: list[dict[str, Any]] | None = None) -> None:
        """Make the validation terminal and freeze its sorted results."""
        self.final = status
        self.errors = errors or []
        self._sorted = sorted(self.entries[: self.processed], key=lambda e: e.email)
        self._sorted_emails = [e.email for e in self._sorted]

    def page(self, query: PageQuery) -> tuple[list[Entry], bool, bool]:
        """One page of results (terminal only): `(entries, has_prev, has_next)`."""
        emails = self._sorted_emails
        lo = bisect_right(emails, query.after) if query.after is not None else 0
        hi = bisect_left(emails, query.before) if query.before is not None else len(emails)
        if query.before is not None and query.after is None:
            lo = max(lo, hi - query.size)
        hi = min(hi, lo + query.size)
        if lo >= hi:
            return [], False, False
        return self._sorted[lo:hi], lo > 0, hi < len(emails)


def new_id() -> str:
    """A UUIDv7 string, like the ids in the API's examples."""
    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


class FakeState:
    """Everything the fake API remembers; methods take `now` from the caller."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.validations: dict[str, Validation] = {}
        self.balance = config.credits
        self.credits_spent = 0
        self.rate_window = RollingWindow(config.rate_limit) if config.rate_limit else None
        self.usage_window = RollingWindow(config.usage_limit) if config.usage_limit else None
        self.submissions: list[tuple[float, int]] = []
        self.submitted_keys: Counter[str] = Counter()
        self.charged_keys: Counter[str] = Counter()

    def roll(self, probability: float) -> bool:
        """True with `probability`; draws from the seeded generator only when it can matter."""
        return probability > 0 and self.rng.random() < probability

    def rate_wait(self, now: float) -> float:
        """Seconds until one more request fits the rate limit (0 = admit it now)."""
        return self.rate_window.wait(1, now) if self.rate_window else 0.0

    def admit_request(self, now: float) -> None:
        """Count an accepted request toward the rate limit."""
        if self.rate_window:
            self.rate_window.add(now)

    def find(self, validation_id: str) -> Validation:
        """The validation with this id, or a 404 problem."""
        try:
            return self.validations[validation_id]
        except KeyError:
            raise FakeProblem.one(
                404, "not_found", f"Email validation {validation_id!r} was not found"
            ) from None

    def submit(self, emails: list[str], now: float) -> Validation:
        """Create a validation for `emails`, or raise the 400/402/429 problem that stops it."""
        self.advance(now)
        weight = len(emails)
        if self.usage_window:
            wait = self.usage_window.wait(weight, now)
            if math.isinf(wait):
                limit = self.usage_window.limit
                raise FakeProblem.one(
                    400,
                    "unsupported_value",
                    f"Number of emails exceeds the usage limit of {limit}",
                    source={"pointer": "/emails"},
                )
            if wait > 0:
                raise usage_limited(wait)
        by_email: dict[str, Entry] = {}
        for email in emails:
            returned = returned_email(email, self.config)
            entry = by_email.setdefault(returned, Entry(returned, set()))
            entry.keys.add(email.strip().lower())
        entries = list(by_email.values())
        if self.balance is not None and self.config.credits_mode == "reject":
            reserved = sum(len(v.entries) - v.processed for v in self._running())
            if len(entries) > self.balance - reserved:
                raise FakeProblem.one(
                    402,
                    "insufficient_credits",
                    f"The account doesn't have enough credits to continue the operation "
                    f"({len(entries)} needed, {max(self.balance - reserved, 0)} available)",
                )
        error_at = len(entries) // 2 if self.roll(self.config.batch_error) else None
        validation = Validation(new_id(), now + self.config.queue_seconds, entries, error_at)
        self.validations[validation.id] = validation
        if self.usage_window:
            self.usage_window.add(now, weight)
        self.submissions.append((now, weight))
        self.submitted_keys.update({email.strip().lower() for email in emails})
        return validation

    def _running(self) -> list[Validation]:
        return [v for v in self.validations.values() if v.final is None]

    def advance(self, now: float) -> None:
        """Bring every running validation up to `now`: process, charge, finish."""
        speed = self.config.emails_per_second
        for v in self._running():
            if now < v.start:
                continue
            total = len(v.entries)
            reached = min(total, math.floor((now - v.start) * speed + _EPSILON))
            target = reached if v.error_at is None else min(reached, v.error_at)
            need = target - v.processed
            granted = self._charge(v, need)
            if granted < need:
                v.finish(
                    "error",
                    [
                        error_object(
                            "insufficient_credits",
                            "The account ran out of credits while this validation was processing",
                        )
                    ],
                )
            elif v.error_at is not None and reached >= v.error_at:
                v.finish(
                    "error",
                    [
                        error_object(
                            "internal_server_error", "Something went wrong while validating"
                        )
                    ],
                )
            elif v.processed == total:
                v.finish("completed")

    def _charge(self, v: Validation, need: int) -> int:
        if need <= 0:
            return 0
        granted = need if self.balance is None else min(need, max(self.balance, 0))
        for entry in v.entries[v.processed : v.processed + granted]:
            self.charged_keys.update(entry.keys)
        v.processed += granted
        self.credits_spent += granted
        if self.balance is not None:
            self.balance -= granted
        return granted

    def cancel(self, v: Validation, now: float) -> None:
        """Cancel a running validation, keeping what was processed; terminal ones stay as is."""
        self.advance(now)
        if v.final is None:
            v.finish("canceled")

    def add_credits(self, count: int) -> None:
        """Top the balance up by `count` (no effect when credits are unlimited)."""
        if self.balance is not None:
            self.balance += count

"""Match the emails the API returns to the emails we submitted.

The API may hand back a different spelling than it was sent ("the email address that went
through the validation process"): its own example turns `bar+baz@example.com` into
`bar@example.com`, and servers may change case. So a result is matched exactly (after trim
and lower-case) first, and otherwise by a canonical key (lower-case, `+tag` dropped) to every
submitted email sharing it. An exact match always wins over a canonical one, whichever page
brings it.

    >>> m = ResultMatcher(["bar+baz@example.com", "foo@example.com"])
    >>> m.match("BAR@example.com")
    ['bar+baz@example.com']
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

REFUSED = "invalid_syntax"
"""What an email the API refused to take (a 400 naming it) is written as."""


def canonical(email: str) -> str:
    """Lower-case, trimmed, with any `+tag` removed from the local part."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return email.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"


class ResultMatcher:
    """Maps returned emails to submitted ones, for one batch."""

    def __init__(self, submitted: Iterable[str]) -> None:
        self._submitted = set(submitted)
        self._by_canonical: dict[str, list[str]] = defaultdict(list)
        for email in sorted(self._submitted):
            self._by_canonical[canonical(email)].append(email)
        self._exact_hits: set[str] = set()
        self._seen: dict[str, tuple[str, bool | None]] = {}

    def recall(self, recorded: Iterable[tuple[str, str, bool | None]]) -> None:
        """Take in the verdicts a batch already recorded (pages committed before a restart),
        so their `+tag` siblings still get them and they are never matched twice.

        >>> m = ResultMatcher(["bar@x.co", "bar+news@x.co"])
        >>> m.recall([("bar@x.co", "risky", True)])
        >>> m.siblings(["bar+news@x.co"])
        [('bar+news@x.co', 'risky', True)]
        """
        for email, result, catch_all in recorded:
            key = email.strip().lower()
            if result != REFUSED:  # the API's refusal of one spelling is no verdict for others
                self._seen.setdefault(canonical(key), (result, catch_all))
            if key in self._submitted:
                self._exact_hits.add(key)

    def match(self, returned: str, verdict: tuple[str, bool | None] | None = None) -> list[str]:
        """The submitted emails this returned email answers for (possibly none)."""
        key = returned.strip().lower()
        if verdict is not None:
            self._seen.setdefault(canonical(key), verdict)
        if key in self._submitted:
            self._exact_hits.add(key)
            return [key]
        group = self._by_canonical.get(canonical(key), [])
        return [email for email in group if email not in self._exact_hits]

    def siblings(self, unresolved: Iterable[str]) -> list[tuple[str, str, bool | None]]:
        """After the last page: verdicts for unanswered emails whose canonical key did get one.

        >>> m = ResultMatcher(["bar@x.co", "bar+news@x.co"])
        >>> m.match("bar@x.co", ("risky", True))
        ['bar@x.co']
        >>> m.siblings(["bar+news@x.co"])
        [('bar+news@x.co', 'risky', True)]
        """
        found = []
        for email in unresolved:
            verdict = self._seen.get(canonical(email))
            if verdict is not None:
                found.append((email, *verdict))
        return found

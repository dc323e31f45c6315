"""Match the emails the API returns to the emails we submitted.

The API may hand back a different spelling than it was sent ("the email address that went
through the validation process"): its own example turns `bar+baz@example.com` into
`bar@example.com`, and servers may change case. So a result is matched exactly (after trim
and lower-case) first, and otherwise by a canonical key (lower-case, `+tag` dropped) to every
submitted email sharing it. An exact match always wins over a canonical one, whichever page
brings it.

The submitted emails are looked up page by page (`Submitted`), not held: a batch has up to
100,000 of them and many batches are paged at once. Only the few emails that differ from
their own canonical key are kept, since only they can be reached through another spelling.

    >>> m = ResultMatcher(["bar+baz@example.com", "foo@example.com"])
    >>> m.match("BAR@example.com")
    ['bar+baz@example.com']
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol, runtime_checkable

REFUSED = "invalid_syntax"
"""What an email the API refused to take (a 400 naming it) is written as."""


Verdict = tuple[str, bool | None]
"""A result and its catch-all flag."""


def canonical(email: str) -> str:
    """Lower-case, trimmed, with any `+tag` removed from the local part."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return email.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"


@runtime_checkable
class Submitted(Protocol):
    """One batch's submitted emails, where a matcher looks them up."""

    def states(self, emails: Collection[str]) -> dict[str, bool]:
        """Those of `emails` that were submitted, each with whether it has a verdict yet."""
        ...

    def every(self) -> Iterable[str]:
        """All of them (read once, to keep the few that differ from their canonical key)."""
        ...

    def note(self, emails: Iterable[str]) -> None:
        """These emails get a verdict now (a store records each page before the next)."""
        ...


class Listed:
    """Submitted emails held in memory: for tests, and batches read back without a store."""

    def __init__(self, submitted: Iterable[str]) -> None:
        self._answered = dict.fromkeys(submitted, False)

    def states(self, emails: Collection[str]) -> dict[str, bool]:
        return {e: self._answered[e] for e in emails if e in self._answered}

    def every(self) -> Iterable[str]:
        return self._answered.keys()

    def note(self, emails: Iterable[str]) -> None:
        for email in emails:
            if email in self._answered:
                self._answered[email] = True


class ResultMatcher:
    """Maps returned emails to submitted ones, for one batch.

    An email counts as matched exactly once it has a verdict that no canonical match gave it
    (this run's canonical matches are the only ones remembered): verdicts recorded before a
    restart are never matched again.
    """

    def __init__(self, submitted: Iterable[str] | Submitted) -> None:
        self._submitted = submitted if isinstance(submitted, Submitted) else Listed(submitted)
        # Canonical key -> the submitted emails spelled otherwise that share it, sorted.
        self._respelled: dict[str, list[str]] = {}
        for email in self._submitted.every():
            key = canonical(email)
            if key != email:
                self._respelled.setdefault(key, []).append(email)
        for group in self._respelled.values():
            group.sort()
        self._by_canonical_only: set[str] = set()
        # First verdict per canonical key, for the keys an unanswered sibling can share.
        self._seen: dict[str, Verdict] = {}

    def recall(self, recorded: Iterable[tuple[str, str, bool | None]]) -> None:
        """Take in the verdicts a batch already recorded (pages committed before a restart),
        so their `+tag` siblings still get them and they are never matched twice.

        >>> m = ResultMatcher(["bar@x.co", "bar+news@x.co"])
        >>> m.recall([("bar@x.co", "risky", True)])
        >>> m.siblings(["bar+news@x.co"])
        [('bar+news@x.co', 'risky', True)]
        """
        keys = []
        for email, result, catch_all in recorded:
            key = email.strip().lower()
            if result != REFUSED:  # the API's refusal of one spelling is no verdict for others
                self._remember(canonical(key), (result, catch_all))
            keys.append(key)
        self._submitted.note(keys)

    def match(self, returned: str, verdict: Verdict | None = None) -> list[str]:
        """The submitted emails this returned email answers for (possibly none)."""
        return self._match([(returned, verdict)])[0]

    def match_page(
        self, results: Sequence[tuple[str, str, bool | None]]
    ) -> list[tuple[str, str, bool | None]]:
        """A page of returned (email, result, catch-all): the verdicts of submitted emails,
        in page order (a later one for the same email wins)."""
        matched = self._match(
            [(email, (result, catch_all)) for email, result, catch_all in results]
        )
        return [
            (email, result, catch_all)
            for (_, result, catch_all), emails in zip(results, matched, strict=True)
            for email in emails
        ]

    def _match(self, returned: Sequence[tuple[str, Verdict | None]]) -> list[list[str]]:
        keys = [email.strip().lower() for email, _ in returned]
        # One look-up for the page; a second, rare, for the canonical keys of what missed.
        states = self._submitted.states(set(keys))
        missed = {canonical(key) for key in keys if key not in states}
        if missed:
            wanted = missed | {e for c in missed for e in self._respelled.get(c, ())}
            states.update(self._submitted.states(wanted - states.keys()))
        exact: set[str] = set()  # matched exactly on this page, not recorded yet

        def matched_exactly(email: str) -> bool:
            return email in exact or (
                states.get(email, False) and email not in self._by_canonical_only
            )

        found = []
        for key, (_, verdict) in zip(keys, returned, strict=True):
            key_canonical = canonical(key)
            if verdict is not None:
                self._remember(key_canonical, verdict)
            if key in states:
                exact.add(key)
                self._by_canonical_only.discard(key)
                found.append([key])
                continue
            group = self._respelled.get(key_canonical, [])
            if key_canonical in states:
                group = sorted([key_canonical, *group])
            emails = [email for email in group if not matched_exactly(email)]
            self._by_canonical_only.update(emails)
            found.append(emails)
        self._submitted.note(email for emails in found for email in emails)
        return found

    def _remember(self, key: str, verdict: Verdict) -> None:
        # Only a key some respelled email shares can reach an email left unanswered: any
        # other key's emails were answered by the very result that carried it.
        if key in self._respelled:
            self._seen.setdefault(key, verdict)

    def siblings(self, unresolved: Iterable[str]) -> list[tuple[str, str, bool | None]]:
        """After the last page: verdicts for the batch's emails still without one whose
        canonical key did get one.

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

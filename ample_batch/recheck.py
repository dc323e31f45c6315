"""The re-check policy: which cached verdicts are bought again once they are old, and its
`VERDICT=DURATION[,...]` grammar, shared by the CLI, the Python API and the planner.

A verdict whose kind has a rule is reused only while younger than the rule's duration (and,
for a cache hit, than `--cache-ttl` too); verdicts of other kinds follow `--cache-ttl` alone.
The rules hold on every run, a re-run of a finished job included.

>>> parse_recheck("unknown=7d,risky=30d")
RecheckPolicy(max_age=(('risky', 2592000.0), ('unknown', 604800.0)))
>>> str(parse_recheck("none"))
'none'
>>> str(DEFAULT_RECHECK)
'unknown=7d'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InputError
from .limits import format_duration, parse_duration

API_RESULTS = ("deliverable", "risky", "undeliverable", "unknown")
"""The verdicts the API gives (amplemarket-api.md): the only kinds a rule may name."""

NO_RECHECK_WORDS = frozenset({"none", "off"})
"""What turns the policy off: `--recheck none`."""


@dataclass(frozen=True)
class RecheckPolicy:
    """Per verdict kind, the age after which a cached verdict is bought again.

    RecheckPolicy((("unknown", 7 * 86400.0),)).max_age_of("unknown")   # 604800.0
    """

    max_age: tuple[tuple[str, float], ...] = ()
    """(verdict, seconds) pairs, sorted by verdict, each verdict once; empty = no rule."""

    def __str__(self) -> str:
        if not self.max_age:
            return "none"
        return ",".join(f"{kind}={format_duration(age)}" for kind, age in self.max_age)

    def __bool__(self) -> bool:
        return bool(self.max_age)

    def max_age_of(self, result: str) -> float | None:
        """The rule's duration for verdicts of `result`, or None when no rule names it."""
        return dict(self.max_age).get(result)

    def by_age(self) -> dict[float, frozenset[str]]:
        """The verdict kinds of each distinct duration: one cache read per duration."""
        groups: dict[float, set[str]] = {}
        for kind, age in self.max_age:
            groups.setdefault(age, set()).add(kind)
        return {age: frozenset(kinds) for age, kinds in sorted(groups.items())}

    @property
    def longest(self) -> float:
        """The longest duration of any rule (0 without rules): what pruning must keep."""
        return max((age for _, age in self.max_age), default=0.0)


NO_RECHECK = RecheckPolicy()


DEFAULT_RECHECK = RecheckPolicy((("unknown", 7 * 86400.0),))
"""`--recheck`'s default: an `unknown` means the mail server did not answer, so it is asked
again after a week; the other verdicts follow `--cache-ttl` (30 days by default)."""


def parse_recheck(text: str) -> RecheckPolicy:
    """Parse `VERDICT=DURATION[,...]`, or `none`; InputError (exit 2) on anything else.

    parse_recheck("unknown=2d, risky=30d")
    """
    if text.strip().lower() in NO_RECHECK_WORDS:
        return NO_RECHECK
    rules: dict[str, str] = {}
    for part in text.split(","):
        kind, equals, duration = part.partition("=")
        if not equals or not kind.strip() or not duration.strip():
            raise InputError(
                f"bad re-check rule {part.strip()!r}: use VERDICT=DURATION, e.g. unknown=7d "
                "(or none)"
            )
        name = kind.strip().lower()
        if name in rules:
            raise InputError(f"bad re-check rule: {name!r} is given twice")
        rules[name] = duration.strip()
    return recheck_from(rules)


def recheck_from(value: str | Mapping[str, str | float] | RecheckPolicy) -> RecheckPolicy:
    """The policy from any form the Python API takes: a policy, its text, or a mapping of
    verdict to a duration (`"7d"` or seconds); `{}` turns it off.

        recheck_from({"unknown": "7d", "risky": 30 * 86400})
    """
    if isinstance(value, RecheckPolicy):
        return value
    if isinstance(value, str):
        return parse_recheck(value)
    if not isinstance(value, Mapping):
        raise TypeError(
            "recheck must be 'VERDICT=DURATION,...', a dict of verdict to duration, or a "
            f"RecheckPolicy, not {type(value).__name__}"
        )
    rules: dict[str, float] = {}
    for kind, duration in value.items():
        name = str(kind).strip().lower()
        if name not in API_RESULTS:
            raise InputError(
                f"bad re-check rule: unknown verdict {kind!r}; use "
                f"{', '.join(API_RESULTS[:-1])} or {API_RESULTS[-1]}"
            )
        if name in rules:
            raise InputError(f"bad re-check rule: {name!r} is given twice")
        rules[name] = _seconds(name, duration)
    return RecheckPolicy(tuple(sorted(rules.items())))


def _seconds(kind: str, duration: object) -> float:
    # A zero duration would buy these verdicts again on every run, a finished job's too: a
    # cron re-running a done job would pay for them every night.
    if isinstance(duration, str):
        try:
            return parse_duration(duration, allow_zero=False)
        except InputError as exc:
            raise InputError(f"bad re-check rule {kind}={duration}: {exc}") from None
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        if duration <= 0:
            raise InputError(f"bad re-check rule {kind}={duration}: must be more than zero")
        return float(duration)
    raise TypeError(f"recheck durations must be '7d' or seconds, not {type(duration).__name__}")

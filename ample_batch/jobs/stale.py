"""Which verdicts a re-check policy buys again, for one job at one moment.

Worked out by the caller from the store's reads (`fresh_verdicts`, `job_verdicts`), so the
store needs one write for it, `release_stale`. Two kinds of verdict go stale:

- **the job's own**: a settled verdict of a kind with a rule, unless the cache holds that same
  verdict checked within the rule's duration (the cache keeps every email's last check time;
  one it has pruned is older than any TTL in use, so counts as stale). Released from the
  job's batches, they are planned again like any email not in a batch;
- **cache hits**: a cached verdict of a kind with a rule, checked before the rule's duration,
  is not reused; it is deleted from the cache before the job's batches are planned, so the
  check a submission makes (`mark_submitting` takes verdicts cached meanwhile) cannot put
  it back.

    stale = StaleVerdicts.read(store, DEFAULT_RECHECK, now=time.time(), wanted=set(unique))
    own = stale.own(store.job_verdicts(job_id))
    store.release_stale(job_id, own, checked_before=KEEP_THE_CACHE)
    fresh = stale.current(store.fresh_verdicts(job.cache_cutoff))
    plan = plan_emails(unique, store.batched_emails(job_id), fresh)
    for checked_before, emails in stale.to_delete(plan.new).items():
        store.release_stale(job_id, emails, checked_before=checked_before)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass, field

from ..recheck import RecheckPolicy
from .protocol import JobStore
from .records import Verdict

KEEP_THE_CACHE = float("-inf")
"""`release_stale`'s `checked_before` that deletes no cached verdict."""


@dataclass
class StaleVerdicts:
    """The policy's view of the cache for the job's emails, and what it found stale."""

    policy: RecheckPolicy
    now: float
    wanted: Set[str]
    """The job's unique emails: nothing else is held in memory."""
    recent: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    """Per kind with a rule: the wanted emails whose cached verdict is of that kind and
    checked within the rule's duration, with their catch-all."""
    kinds: dict[str, str] = field(default_factory=dict)
    """Every stale email found so far (own or cached), with the kind that went stale."""
    from_cache: set[str] = field(default_factory=set)
    """The wanted emails whose cache hit `current` refused as stale."""

    @classmethod
    def read(
        cls, store: JobStore, policy: RecheckPolicy, *, now: float, wanted: Set[str]
    ) -> StaleVerdicts:
        """Read the recent verdicts of the wanted emails: one cache read per rule duration."""
        stale = cls(policy, now, wanted)
        for age, kinds in policy.by_age().items():
            for kind in kinds:
                stale.recent[kind] = {}
            for email, result, catch_all in store.fresh_verdicts(now - age):
                if result in kinds and email in wanted:
                    stale.recent[result][email] = catch_all
        return stale

    def checked_before(self, result: str) -> float:
        """The check time before which a `result` verdict is stale (its rule exists)."""
        age = self.policy.max_age_of(result)
        assert age is not None
        return self.now - age

    def own(self, job_verdicts: Iterable[Verdict]) -> list[str]:
        """The job's settled verdicts to buy again (see the module docstring)."""
        found: list[str] = []
        for email, result, catch_all in job_verdicts:
            recent = self.recent.get(result)
            if recent is None:
                continue  # no rule for this kind (or `failed`, `invalid_syntax`)
            if email in recent and recent[email] == catch_all:
                continue
            found.append(email)
            self.kinds[email] = result
        return found

    def current(self, fresh: Iterable[Verdict]) -> Iterator[Verdict]:
        """The cache hits the policy still allows, streamed; the stale ones of wanted emails
        are noted in `from_cache` (see `to_delete`)."""
        for row in fresh:
            email, result, catch_all = row
            recent = self.recent.get(result)
            if recent is None or recent.get(email, _MISSING) == catch_all:
                yield row
            elif email in self.wanted:
                self.from_cache.add(email)
                self.kinds.setdefault(email, result)

    def to_delete(self, bought: Iterable[str]) -> dict[float, list[str]]:
        """The stale cache hits among the emails to be bought, by the check time before
        which their verdict is stale: `release_stale` deletes them before planning, so a
        submission's cache check cannot reuse them. (An email the job holds is left to
        `own`: only what is bought goes.)"""
        groups: dict[float, list[str]] = {}
        for email in bought:
            if email in self.from_cache:
                groups.setdefault(self.checked_before(self.kinds[email]), []).append(email)
        return groups

    def rechecked(self, bought: Iterable[str]) -> dict[str, int]:
        """Of the emails to be bought, how many each rule sends again, by verdict kind."""
        counts = dict.fromkeys(sorted(self.recent), 0)
        for email in bought:
            kind = self.kinds.get(email)
            if kind is not None:
                counts[kind] += 1
        return counts


_MISSING = object()

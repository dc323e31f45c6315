import tracemalloc
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ample_batch.api.match import ResultMatcher, canonical
from ample_batch.jobs.follow import StoredEmails
from ample_batch.jobs.sqlite.store import Store


def test_exact_then_canonical() -> None:
    matcher = ResultMatcher(["bar+baz@example.com", "bar+qux@example.com", "foo@example.com"])
    assert matcher.match("FOO@example.com ") == ["foo@example.com"]
    assert matcher.match("bar@example.com") == ["bar+baz@example.com", "bar+qux@example.com"]
    assert matcher.match("nobody@example.com") == []


def test_exact_match_wins_whatever_the_order() -> None:
    matcher = ResultMatcher(["bar@example.com", "bar+x@example.com"])
    assert matcher.match("bar+x@example.com") == ["bar+x@example.com"]
    assert matcher.match("bar@example.com") == ["bar@example.com"]
    other = ResultMatcher(["bar+x@example.com"])
    assert other.match("BAR+X@EXAMPLE.COM") == ["bar+x@example.com"]


@given(st.from_regex(r"[A-Za-z0-9.+]{1,10}@[a-z]{1,5}\.com", fullmatch=True))
def test_canonical_is_idempotent(email: str) -> None:
    assert canonical(canonical(email)) == canonical(email)


def test_recalled_verdicts_reach_siblings_after_a_restart() -> None:
    # The first run committed `bar@`'s verdict, then was killed before the siblings' turn.
    matcher = ResultMatcher(["bar@x.co", "bar+news@x.co", "baz@x.co"])
    matcher.recall([("bar@x.co", "risky", True)])
    assert matcher.siblings(["bar+news@x.co", "baz@x.co"]) == [("bar+news@x.co", "risky", True)]
    # A recalled email is never matched again by a later canonical result.
    assert matcher.match("bar+other@x.co") == ["bar+news@x.co"]


def test_a_refused_spelling_is_no_verdict_for_its_siblings() -> None:
    matcher = ResultMatcher(["bar@x.co", "bar+news@x.co"])
    matcher.recall([("bar@x.co", "invalid_syntax", None)])
    assert matcher.siblings(["bar+news@x.co"]) == []


# -- a batch's emails are looked up, not held (issue 11, section 7) --------------------------


def stored_batch(tmp_path: Path, addresses: list[str]) -> tuple[Store, int]:
    store = Store(tmp_path / "state")
    job = store.open_job(
        input_path=str(tmp_path / "leads.csv"),
        fingerprint="f",
        email_column="Email",
        output_path=None,
        cache_ttl=0,
    )
    store.plan(job.id, cached=[], new=sorted(addresses), chunk_size=len(addresses))
    (batch,) = store.batches(job.id)
    return store, batch.id


def test_a_stored_batch_resolves_tags_and_case_across_pages(tmp_path: Path) -> None:
    submitted = ["bar@x.co", "bar+news@x.co", "baz+a@x.co", "baz+b@x.co", "qux@x.co"]
    store, batch_id = stored_batch(tmp_path, submitted)
    matcher = ResultMatcher(StoredEmails(store, batch_id))

    def page(*results: tuple[str, str]) -> list[tuple[str, str, bool | None]]:
        verdicts = matcher.match_page([(email, result, None) for email, result in results])
        store.record_page(batch_id, verdicts, next_href=None)
        return verdicts

    # Case and spaces: exact. `baz@` is no one's spelling: both its `+tag` emails share it.
    assert page((" QUX@X.CO", "risky"), ("baz@x.co", "unknown")) == [
        ("qux@x.co", "risky", None),
        ("baz+a@x.co", "unknown", None),
        ("baz+b@x.co", "unknown", None),
    ]
    # An exact result overrides the canonical one of an earlier page; a canonical one never
    # overrides an exact one, of an earlier page or of the same page.
    assert page(("baz+a@x.co", "deliverable"), ("BAZ@x.co", "undeliverable")) == [
        ("baz+a@x.co", "deliverable", None),
        ("baz+b@x.co", "undeliverable", None),
    ]
    assert page(("bar@x.co", "deliverable"), ("bar+other@x.co", "risky")) == [
        ("bar@x.co", "deliverable", None),
        ("bar+news@x.co", "risky", None),
    ]
    verdicts = {e: r for e, r, _ in store.batch_verdicts(batch_id)}
    assert verdicts == {
        "bar@x.co": "deliverable",
        "bar+news@x.co": "risky",
        "baz+a@x.co": "deliverable",
        "baz+b@x.co": "undeliverable",
        "qux@x.co": "risky",
    }
    # A new matcher (a restart) treats every recorded verdict as final.
    again = ResultMatcher(StoredEmails(store, batch_id))
    again.recall(store.batch_verdicts(batch_id))
    assert again.match_page([("baz@x.co", "unknown", None)]) == []
    store.close()


def test_a_stored_batch_gives_siblings_the_verdict_of_their_spelling(tmp_path: Path) -> None:
    store, batch_id = stored_batch(tmp_path, ["bar@x.co", "bar+news@x.co", "baz@x.co"])
    matcher = ResultMatcher(StoredEmails(store, batch_id))
    verdicts = matcher.match_page([("BAR@x.co", "risky", True), ("baz@x.co", "unknown", False)])
    assert verdicts == [("bar@x.co", "risky", True), ("baz@x.co", "unknown", False)]
    store.record_page(batch_id, verdicts, next_href=None)
    unresolved = store.batch_emails(batch_id, unresolved=True)
    assert matcher.siblings(unresolved) == [("bar+news@x.co", "risky", True)]
    store.close()


def test_a_matcher_keeps_only_the_respelled_emails_of_a_stored_batch(tmp_path: Path) -> None:
    # Many batches are paged at once: each matcher used to hold its whole batch, several
    # structures deep; now only what a canonical key can reach besides itself.
    addresses = [f"lead{i:06d}@company{i % 7}.com" for i in range(20_000)]
    store, batch_id = stored_batch(tmp_path, [*addresses, "lead000001+x@company1.com"])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        matcher = ResultMatcher(StoredEmails(store, batch_id))
        for start in range(0, len(addresses), 100):
            verdicts = matcher.match_page(
                [(email.upper(), "risky", None) for email in addresses[start : start + 100]]
            )
            store.record_page(batch_id, verdicts, next_href=None)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200_000  # the batch's emails alone are over a megabyte
    assert matcher.siblings(store.batch_emails(batch_id, unresolved=True)) == [
        ("lead000001+x@company1.com", "risky", None)
    ]
    store.close()


class HeldMatcher:
    """The matcher as it was when it held every submitted email: the reference."""

    def __init__(self, submitted: list[str]) -> None:
        self.submitted = set(submitted)
        self.by_canonical: dict[str, list[str]] = {}
        for email in sorted(self.submitted):
            self.by_canonical.setdefault(canonical(email), []).append(email)
        self.exact: set[str] = set()
        self.seen: dict[str, tuple[str, bool | None]] = {}

    def recall(self, recorded: list[tuple[str, str, bool | None]]) -> None:
        for email, result, catch_all in recorded:
            if result != "invalid_syntax":
                self.seen.setdefault(canonical(email), (result, catch_all))
            self.exact.add(email)

    def match(self, returned: str, verdict: tuple[str, bool | None]) -> list[str]:
        key = returned.strip().lower()
        self.seen.setdefault(canonical(key), verdict)
        if key in self.submitted:
            self.exact.add(key)
            return [key]
        return [e for e in self.by_canonical.get(canonical(key), []) if e not in self.exact]


SPELLINGS = [f"{local}{tag}@x.co" for local in "ab" for tag in ("", "+p", "+q")]
RESULTS = st.tuples(st.sampled_from(["risky", "unknown", "invalid_syntax"]), st.booleans())


@given(
    submitted=st.sets(st.sampled_from(SPELLINGS), min_size=1),
    recorded=st.lists(st.tuples(st.sampled_from(SPELLINGS), RESULTS), max_size=3),
    pages=st.lists(
        st.lists(st.tuples(st.sampled_from(SPELLINGS), st.booleans(), RESULTS), max_size=4),
        max_size=4,
    ),
)
def test_matching_by_look_up_matches_as_holding_everything_did(
    submitted: set[str],
    recorded: list[tuple[str, tuple[str, bool]]],
    pages: list[list[tuple[str, bool, tuple[str, bool]]]],
) -> None:
    recalled = [(e, r, c) for e, (r, c) in dict(recorded).items() if e in submitted]
    held, looked_up = HeldMatcher(sorted(submitted)), ResultMatcher(sorted(submitted))
    held.recall(recalled)
    looked_up.recall(recalled)
    answered = {e for e, _, _ in recalled}
    for page in pages:
        results = [(e.upper() if up else e, r, c) for e, up, (r, c) in page]
        expected = [(m, r, c) for e, r, c in results for m in held.match(e, (r, c))]
        assert looked_up.match_page(results) == expected
        answered.update(e for e, _, _ in expected)
    unresolved = sorted(submitted - answered)
    expected_siblings = [
        (e, *held.seen[canonical(e)]) for e in unresolved if canonical(e) in held.seen
    ]
    assert looked_up.siblings(unresolved) == expected_siblings

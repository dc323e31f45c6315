from hypothesis import given
from hypothesis import strategies as st

from ample_batch.match import ResultMatcher, canonical


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

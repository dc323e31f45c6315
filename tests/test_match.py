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

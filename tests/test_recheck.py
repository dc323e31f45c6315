"""The re-check policy's grammar: `VERDICT=DURATION[,...]`, `none`, and the Python API's forms."""

from __future__ import annotations

import pytest

from ample_batch.errors import InputError
from ample_batch.pipeline.keywords import run_options
from ample_batch.recheck import (
    DEFAULT_RECHECK,
    NO_RECHECK,
    RecheckPolicy,
    parse_recheck,
    recheck_from,
)

DAY = 86400.0


def test_rules_parse_sorted_and_print_back() -> None:
    policy = parse_recheck(" Unknown=7d, risky=30d ")
    assert policy.max_age == (("risky", 30 * DAY), ("unknown", 7 * DAY))
    assert str(policy) == "risky=30d,unknown=7d"
    assert parse_recheck(str(policy)) == policy
    assert policy.max_age_of("unknown") == 7 * DAY and policy.max_age_of("deliverable") is None
    assert policy.longest == 30 * DAY
    assert parse_recheck("unknown=2s,risky=2s").by_age() == {2.0: frozenset({"unknown", "risky"})}


def test_none_turns_it_off_and_the_default_is_unknown_after_a_week() -> None:
    assert parse_recheck("none") == parse_recheck("OFF") == NO_RECHECK == recheck_from({})
    assert not NO_RECHECK and str(NO_RECHECK) == "none" and NO_RECHECK.longest == 0
    assert str(DEFAULT_RECHECK) == "unknown=7d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unkown=7d", "unknown verdict 'unkown'; use deliverable, risky, undeliverable or unknown"),
        ("failed=7d", "unknown verdict 'failed'"),
        ("unknown", "use VERDICT=DURATION"),
        ("unknown=", "use VERDICT=DURATION"),
        ("=7d", "use VERDICT=DURATION"),
        ("unknown=7d,", "use VERDICT=DURATION"),
        ("unknown=soon", "bad duration 'soon'"),
        ("unknown=0", "more than zero"),
        ("unknown=7d,unknown=1d", "given twice"),
    ],
)
def test_bad_rules_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        parse_recheck(text)
    assert raised.value.exit_code == 2


def test_the_python_api_takes_text_a_mapping_or_a_policy() -> None:
    policy = RecheckPolicy((("unknown", 2 * DAY),))
    assert recheck_from("unknown=2d") == recheck_from({"unknown": "2d"}) == policy
    assert recheck_from({"UNKNOWN": 2 * DAY}) == recheck_from(policy) == policy
    with pytest.raises(InputError, match="more than zero"):
        recheck_from({"unknown": 0})
    with pytest.raises(TypeError, match="recheck must be"):
        recheck_from(7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="durations"):
        recheck_from({"unknown": True})


def test_keywords_default_to_the_default_policy() -> None:
    assert run_options("leads.csv", {}).recheck == DEFAULT_RECHECK
    assert run_options("leads.csv", {"recheck": None}).recheck == DEFAULT_RECHECK
    assert run_options("leads.csv", {"recheck": "none"}).recheck == NO_RECHECK
    assert str(run_options("leads.csv", {"recheck": {"risky": "30d"}}).recheck) == "risky=30d"

import pytest

from ample_batch.errors import InputError
from ample_batch.limits import Limit, format_duration, parse_duration, parse_limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15000/hour", Limit(15000, 3600.0)),
        ("500/minute", Limit(500, 60.0)),
        ("1000/3s", Limit(1000, 3.0)),
        ("60/5s", Limit(60, 5.0)),
        ("10/10m", Limit(10, 600.0)),
        ("1/1d", Limit(1, 86400.0)),
        ("7/second", Limit(7, 1.0)),
        ("100/day", Limit(100, 86400.0)),
    ],
)
def test_parse_limit(text: str, expected: Limit) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("15000", "use COUNT/PERIOD"),
        ("abc/hour", "use COUNT/PERIOD"),
        ("0/hour", "at least 1"),
        ("10/fortnight", "period must be"),
        ("10/0s", "period must be"),
        ("-5/hour", "use COUNT/PERIOD"),
    ],
)
def test_parse_limit_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_limit(text)


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("0") == 0
    assert parse_duration("1.5h") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(InputError):
        parse_duration("soon")


def test_format_round_trips() -> None:
    for text in ("1h", "3s", "10m", "2d", "2.5s"):
        assert format_duration(parse_duration(text)) == text
    assert str(Limit(15000, 3600.0)) == "15000/1h"


def test_durations_in_parts_add_up_and_a_part_without_its_unit_is_refused() -> None:
    assert parse_duration("1h30m") == parse_duration("1h 30m") == 5400
    assert parse_duration("2d12h") == 2.5 * 86400
    assert parse_limit("15000/1h30m") == Limit(15000, 5400.0)
    for text in ("1h30", "h30m", "30m-1h", "1h-30m"):
        with pytest.raises(InputError, match="bad duration"):
            parse_duration(text)

"""The pure parsing of API answers: Retry-After, headers in any case, errors by type."""

from __future__ import annotations

import email.utils
import time

import pytest

from ample_batch.api.responses import (
    MISSING_STATUS,
    error_for,
    header,
    parse_retry_after,
    parse_validation,
)
from ample_batch.errors import RateLimited, SubmissionUnknown, TransientError, UsageLimited

RATE_BODY = {"_errors": [{"code": "rate_limit_exceeded", "detail": "slow down"}]}
SERVER_ERROR = {"_errors": [{"code": "internal_server_error", "detail": "Something went wrong."}]}


@pytest.mark.parametrize("text", ["1e999", "inf", "-inf", "nan", "NaN", "soon", "", "0x10", " "])
def test_retry_after_that_is_not_a_finite_number_is_ignored(text: str) -> None:
    assert parse_retry_after(text) is None


@pytest.mark.parametrize(("text", "seconds"), [("-5", 0.0), ("0", 0.0), ("2.5", 2.5)])
def test_retry_after_seconds(text: str, seconds: float) -> None:
    assert parse_retry_after(text) == seconds


def test_retry_after_dates_far_away_are_finite_and_past_ones_zero() -> None:
    far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert far is not None and far > 86400
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    # Dates no calendar holds, or that overflow a timestamp, are garbage, not a crash.
    for text in ("Mon, 99 Foo 99999 99:99:99 GMT", "Fri, 31 Dec 99999 23:59:59 GMT"):
        assert parse_retry_after(text) is None


def test_header_names_are_matched_in_any_case() -> None:
    headers = {"retry-after": "3", "location": "/email-validations/v1"}
    assert header(headers, "Retry-After") == "3"
    assert header(headers, "LOCATION") == "/email-validations/v1"
    assert header(headers, "Date") is None
    validation = parse_validation({"id": "v1", "status": "processing"}, headers, fallback_href=None)
    assert validation.retry_after == 3.0
    error = error_for(429, {"RETRY-AFTER": "7"}, RATE_BODY)
    assert isinstance(error, RateLimited) and error.retry_after == 7.0


def test_http_date_is_measured_against_a_lower_cased_date_header() -> None:
    now = time.time()
    headers = {
        "retry-after": email.utils.formatdate(now + 30, usegmt=True),
        "date": email.utils.formatdate(now + 10, usegmt=True),
    }
    error = error_for(429, headers, RATE_BODY)
    assert error.retry_after == pytest.approx(20, abs=1)


@pytest.mark.parametrize("body", [SERVER_ERROR, None, {}])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_to_a_post_is_fate_unknown_with_or_without_an_error_body(status, body) -> None:
    assert isinstance(error_for(status, {}, body, post=True), SubmissionUnknown)
    assert isinstance(error_for(status, {}, body), TransientError)


@pytest.mark.parametrize("body", [RATE_BODY, None, {"_errors": [{"code": "too_many"}]}])
def test_any_429_to_a_post_is_a_usage_refusal_of_that_batch(body) -> None:
    error = error_for(429, {"Retry-After": "4"}, body, post=True)
    assert isinstance(error, UsageLimited)
    assert error.retry_after == 4.0
    # Elsewhere it is what it says: a rate limit, retried after the pause.
    assert isinstance(error_for(429, {}, body), RateLimited)


def test_a_missing_status_is_unknown_never_queued() -> None:
    # `status` is required; taking its absence for `queued` would poll for ever.
    body = {"id": "v1", "object": "email_validation", "results": [], "_links": {}}
    validation = parse_validation(body, {}, fallback_href="/email-validations/v1")
    assert validation.status == MISSING_STATUS
    assert not validation.terminal


def test_the_apis_details_are_one_clause_of_the_message_without_their_full_stops() -> None:
    body = {
        "_errors": [
            {"code": "insufficient_credits", "detail": "Not enough credits. "},
            {"code": "internal_server_error", "detail": "Something went wrong."},
        ]
    }
    assert str(error_for(402, {}, body)) == (
        "the account is out of email credits: Not enough credits; Something went wrong; "
        "top up, then run again"
    )

"""The fake Amplemarket API, spoken to over real HTTP on 127.0.0.1 with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from helpers import ManualClock, StartFake
from multidict import CIMultiDictProxy

from ample_batch.fake.app import FakeApi
from ample_batch.fake.command import mock_server
from ample_batch.fake.config import FakeConfig, canonical_email, verdict_for
from ample_batch.limits import parse_limit

AUTH = {"Authorization": "Bearer test-key"}


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class Api:
    """A thin test client: one method per endpoint, replies with parsed JSON bodies."""

    def __init__(self, api: FakeApi, session: aiohttp.ClientSession, url: str) -> None:
        self.api = api
        self.session = session
        self.url = url

    async def call(self, method: str, href: str, **kwargs: Any) -> Reply:
        async with self.session.request(method, href, **kwargs) as response:
            text = await response.text()
            return Reply(response.status, response.headers, json.loads(text) if text else None)

    async def post(self, emails: list[str], **kwargs: Any) -> Reply:
        body = {"emails": [{"email": e} for e in emails]}
        return await self.call("POST", "/email-validations", json=body, **kwargs)

    async def get(self, href: str, **kwargs: Any) -> Reply:
        return await self.call("GET", href, **kwargs)

    async def cancel(self, href: str) -> Reply:
        return await self.call("PATCH", href, json={"status": "canceled"})

    async def pages(self, href: str) -> list[list[dict[str, Any]]]:
        """Every page of a terminal validation, following `_links.next.href`."""
        pages = []
        next_href: str | None = href
        while next_href:
            reply = await self.get(next_href)
            assert reply.status == 200, reply.body
            pages.append(reply.body["results"])
            next_href = reply.body["_links"].get("next", {}).get("href")
        return pages


OpenApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def open_api(fake_api: StartFake, clock: ManualClock) -> AsyncIterator[OpenApi]:
    async with contextlib.AsyncExitStack() as stack:

        async def open_(**overrides: Any) -> Api:
            fake = await fake_api(api_key="test-key", clock=clock, **overrides)
            session = aiohttp.ClientSession(fake.url, headers=AUTH)
            await stack.enter_async_context(session)
            return Api(fake.api, session, fake.url)

        yield open_


def emails(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i:05d}@example{i % 7}.com" for i in range(n)]


def codes(reply: Reply) -> list[str]:
    assert reply.body["object"] == "error"
    return [error["code"] for error in reply.body["_errors"]]


async def completed(api: Api, clock: ManualClock, submitted: list[str], **kwargs: Any) -> str:
    """POST `submitted`, move the clock past its processing, return its href."""
    reply = await api.post(submitted, **kwargs)
    assert reply.status == 202, reply.body
    clock.advance(len(submitted) / api.api.config.emails_per_second + 1)
    return str(reply.headers["Location"])


# -- the happy path --------------------------------------------------------------------------


async def test_happy_path_2345_emails_in_24_pages(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api()
    submitted = emails(2345)
    started = await api.post(submitted)
    assert started.status == 202
    assert started.headers["Content-Type"].startswith("application/json")
    href = started.body["_links"]["self"]["href"]
    assert started.headers["Location"] == href == f"/email-validations/{started.body['id']}"
    assert uuid.UUID(started.body["id"]).version == 7
    assert started.body | {"id": None, "_links": None} == {
        "id": None,
        "object": "email_validation",
        "status": "queued",
        "results": [],
        "_links": None,
    }

    statuses = []
    for _ in range(3):
        reply = await api.get(href)
        statuses.append((reply.body["status"], reply.headers.get("Retry-After")))
        if reply.body["status"] != "completed":
            assert reply.body["results"] == []
        clock.advance(1.0)
    assert statuses == [("queued", "1"), ("processing", "1"), ("completed", None)]

    pages = await api.pages(href)
    assert [len(page) for page in pages] == [100] * 23 + [45]
    results = [result for page in pages for result in page]
    returned = [result["email"] for result in results]
    assert returned == sorted(submitted)
    for result in results:
        assert result["object"] == "email_validation_result"
        assert (result["result"], result["catch_all"]) == verdict_for(result["email"])

    first = await api.get(href)
    assert "prev" not in first.body["_links"]
    after = pages[0][-1]["email"]
    assert first.body["_links"]["next"]["href"] == f"{href}?page[size]=100&page[after]={after}"
    summary = api.api.summary()
    assert summary.early_polls == 0
    assert summary.credits_spent == 2345
    assert summary.validations == 1
    assert summary.requests == 1 + 3 + 24 + 1


async def test_vnd_amp_json_content_type_is_accepted(open_api: OpenApi) -> None:
    api = await open_api()
    body = json.dumps({"emails": [{"email": "a@example.com"}]})
    headers = {"Content-Type": "application/vnd.amp+json"}
    reply = await api.call("POST", "/email-validations", data=body, headers=headers)
    assert reply.status == 202
    reply = await api.call("POST", "/email-validations", data=body)  # no JSON content type
    assert reply.status == 400
    assert reply.body["_errors"][0]["source"] == {"header": "Content-Type"}


async def test_queued_then_processing_with_fractional_retry_after(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(queue_seconds=5, retry_after=0.2, emails_per_second=10)
    href = (await api.post(emails(20))).headers["Location"]
    clock.advance(4.9)
    reply = await api.get(href)
    assert (reply.body["status"], reply.headers["Retry-After"]) == ("queued", "0.2")
    clock.advance(1.1)
    reply = await api.get(href)
    assert (reply.body["status"], reply.body["results"]) == ("processing", [])
    clock.advance(2.0)
    assert (await api.get(href)).body["status"] == "completed"


# -- sorting and cursors -----------------------------------------------------------------


async def test_results_sorted_normalised_and_cursors_exclusive(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api()
    href = await completed(
        api, clock, ["C@x.com", "a+news@x.com", " b@x.com", "A@X.com", "d@x.com"]
    )

    async def page(query: str) -> list[str]:
        reply = await api.get(f"{href}?{query}")
        assert reply.status == 200
        return [r["email"] for r in reply.body["results"]]

    assert await page("") == ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
    assert await page("page[after]=a@x.com") == ["b@x.com", "c@x.com", "d@x.com"]
    assert await page("page[before]=c@x.com") == ["a@x.com", "b@x.com"]
    assert await page("page[after]=a@x.com&page[before]=d@x.com") == ["b@x.com", "c@x.com"]
    assert await page("page[after]=aa@x.com&page[size]=1") == ["b@x.com"]
    assert await page("page[after]=d@x.com") == []
    assert await page("page[size]=2&page[before]=d@x.com") == ["b@x.com", "c@x.com"]

    middle = await api.get(f"{href}?page[size]=2&page[after]=a@x.com")
    links = middle.body["_links"]
    assert links["prev"]["href"] == f"{href}?page[size]=2&page[before]=b@x.com"
    assert links["next"]["href"] == f"{href}?page[size]=2&page[after]=c@x.com"
    last = await api.get(links["next"]["href"])
    assert [r["email"] for r in last.body["results"]] == ["d@x.com"]
    assert "next" not in last.body["_links"]
    prev = await api.get(links["prev"]["href"])
    assert [r["email"] for r in prev.body["results"]] == ["a@x.com"]
    assert "prev" not in prev.body["_links"]
    assert api.api.summary().credits_spent == 4  # inputs that collapse share one credit


async def test_cursor_links_percent_encode_plus(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(normalise_results=False)
    submitted = ["a+1@x.com", "a+2@x.com", "a+3@x.com"]
    href = await completed(api, clock, submitted)
    first = await api.get(f"{href}?page[size]=1")
    next_href = first.body["_links"]["next"]["href"]
    assert next_href == f"{href}?page[size]=1&page[after]=a%2B1@x.com"
    pages = await api.pages(f"{href}?page[size]=1")
    assert [r["email"] for page in pages for r in page] == submitted


@pytest.mark.parametrize("size", ["0", "101", "abc", "-1", "", "1.5", "٣"])
async def test_page_size_out_of_range_is_400(
    open_api: OpenApi, clock: ManualClock, size: str
) -> None:
    api = await open_api()
    href = await completed(api, clock, emails(3))
    reply = await api.get(href, params={"page[size]": size})
    assert reply.status == 400
    assert codes(reply) == ["unsupported_value"]
    assert reply.body["_errors"][0]["source"] == {"parameter": "page[size]"}
    assert reply.body["_errors"][0]["status"] == "400"
    for good in ("1", "100"):
        assert (await api.get(href, params={"page[size]": good})).status == 200


# -- client errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "pointer"),
    [
        ({}, "missing_field", "/emails"),
        ({"emails": []}, "unsupported_value", "/emails"),
        ({"emails": "a@x.com"}, "unsupported_value", "/emails"),
        ({"emails": [{"email": "a@x.com"}], "extra": 1}, "unsupported_value", "/extra"),
        ({"emails": [{"email": "a@x.com"}, "b@x.com"]}, "unsupported_value", "/emails/1/email"),
        ({"emails": [{"email": "a@x.com", "name": "A"}]}, "unsupported_value", "/emails/0/email"),
        ({"emails": [{"email": 7}]}, "unsupported_value", "/emails/0/email"),
        ({"emails": [{"email": "not-an-email"}]}, "unsupported_value", "/emails/0/email"),
        ([1, 2], "unsupported_value", ""),
    ],
)
async def test_bad_post_bodies_are_400(
    open_api: OpenApi, body: Any, code: str, pointer: str
) -> None:
    api = await open_api()
    reply = await api.call("POST", "/email-validations", json=body)
    assert reply.status == 400
    assert codes(reply) == [code]
    error = reply.body["_errors"][0]
    assert error["source"] == {"pointer": pointer}
    assert error["status"] == "400" and error["title"] and error["detail"]
    assert api.api.summary().validations == 0


async def test_every_bad_item_is_reported(open_api: OpenApi) -> None:
    api = await open_api()
    body = {"emails": [{"email": "x"}, {"email": "ok@x.com"}, {"mail": "y@x.com"}]}
    reply = await api.call("POST", "/email-validations", json=body)
    pointers = [e["source"]["pointer"] for e in reply.body["_errors"]]
    assert pointers == ["/emails/0/email", "/emails/2/email"]


async def test_post_body_not_json_and_over_100000_are_400(open_api: OpenApi) -> None:
    api = await open_api()
    reply = await api.call(
        "POST", "/email-validations", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert (reply.status, codes(reply)) == (400, ["unsupported_value"])
    reply = await api.post(["a@x.com"] * 100_001)
    assert reply.status == 400
    assert reply.body["_errors"] == [
        {
            "status": "400",
            "code": "unsupported_value",
            "title": "Unsupported Value",
            "detail": "Number of emails exceeds 100000 limit",
            "source": {"pointer": "/emails"},
        }
    ]
    assert (await api.post(["a@x.com"] * 100_000)).status == 202


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}]
)
async def test_missing_or_wrong_key_is_401(open_api: OpenApi, headers: dict[str, str]) -> None:
    api = await open_api()
    async with aiohttp.ClientSession(api.url, headers=headers) as anonymous:
        async with anonymous.post("/email-validations", json={"emails": []}) as response:
            assert response.status == 401
            assert [e["code"] for e in (await response.json())["_errors"]] == ["unauthorized"]
        async with anonymous.get("/email-validations/x") as response:
            assert response.status == 401


async def test_unknown_id_is_404_and_unknown_route_is_json(open_api: OpenApi) -> None:
    api = await open_api()
    missing = f"/email-validations/{uuid.uuid4()}"
    for reply in (await api.get(missing), await api.cancel(missing)):
        assert (reply.status, codes(reply)) == (404, ["not_found"])
    reply = await api.get("/email-validations")
    assert (reply.status, codes(reply)) == (405, ["method_not_allowed"])


@pytest.mark.parametrize(
    "body", [{"status": "completed"}, {}, {"status": "canceled", "x": 1}, ["canceled"]]
)
async def test_bad_patch_bodies_are_400(open_api: OpenApi, body: Any) -> None:
    api = await open_api()
    href = (await api.post(["a@x.com"])).headers["Location"]
    reply = await api.call("PATCH", href, json=body)
    assert (reply.status, codes(reply)) == (400, ["unsupported_value"])


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_keeps_and_charges_only_processed(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(emails_per_second=100)
    submitted = emails(1000)
    href = (await api.post(submitted)).headers["Location"]
    clock.advance(2.505)
    reply = await api.cancel(href)
    assert (reply.status, reply.body["status"]) == (200, "canceled")
    assert "Retry-After" not in reply.headers
    clock.advance(60)
    pages = await api.pages(href)
    returned = [r["email"] for page in pages for r in page]
    assert returned == sorted(submitted[:250])
    assert api.api.summary().credits_spent == 250

    again = await api.cancel(href)  # terminal: 200 with the object unchanged
    assert (again.status, again.body["status"]) == (200, "canceled")
    assert again.body["results"] == pages[0]


async def test_cancel_queued_and_completed(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(queue_seconds=10)
    queued = (await api.post(emails(5))).headers["Location"]
    assert (await api.cancel(queued)).body | {"id": 0, "_links": 0} == {
        "id": 0,
        "object": "email_validation",
        "status": "canceled",
        "results": [],
        "_links": 0,
    }
    done = await completed(api, clock, emails(5, "other"))
    clock.advance(10)  # the queue
    reply = await api.cancel(done)
    assert (reply.status, reply.body["status"], len(reply.body["results"])) == (200, "completed", 5)
    assert api.api.summary().credits_spent == 5


# -- limits ------------------------------------------------------------------------------


async def test_usage_limit_429_with_retry_after(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(usage_limit=parse_limit("1000/3s"))
    assert (await api.post(emails(600))).status == 202
    clock.advance(1)
    refused = await api.post(emails(600, "b"))
    assert (refused.status, codes(refused)) == (429, ["usage_limit_exceeded"])
    assert refused.headers["Retry-After"] == "2"
    assert (await api.post(emails(400, "c"))).status == 202  # exactly fills the window
    clock.advance(2)
    assert (await api.post(emails(600, "b"))).status == 202
    too_big = await api.post(emails(1001, "d"))  # can never fit the window
    assert (too_big.status, codes(too_big)) == (400, ["unsupported_value"])
    summary = api.api.summary()
    assert (summary.usage_limited, summary.rate_limited) == (1, 0)
    assert summary.peak_emails_in_window == 1000
    assert summary.emails_submitted == 1600


async def test_rate_limit_429_with_retry_after(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(rate_limit=parse_limit("3/2s"))
    assert (await api.get("/email-validations/a")).status == 404
    clock.advance(0.5)
    for _ in range(2):
        assert (await api.get("/email-validations/a")).status == 404
    refused = await api.get("/email-validations/a")
    assert (refused.status, codes(refused)) == (429, ["rate_limit_exceeded"])
    assert refused.headers["Retry-After"] == "1.5"
    clock.advance(1.5)
    assert (await api.get("/email-validations/a")).status == 404
    summary = api.api.summary()
    assert (summary.rate_limited, summary.requests) == (1, 5)
    assert summary.requests_by_status == {404: 4, 429: 1}
    assert summary.peak_requests_in_window == 3


async def test_summary_peaks_early_polls_and_twice_counters(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(emails_per_second=1, retry_after=1)
    first = await api.post(["a@x.com", "b@x.com", "A@x.com "])
    href = first.headers["Location"]
    await api.get(href)  # queued, Retry-After 1
    clock.advance(0.5)
    await api.get(href)  # early: wanted 1 s
    clock.advance(0.96)
    await api.get(href)  # 0.96 s after the last hint: inside the 50 ms tolerance
    clock.advance(10)
    await api.post(["B@X.com", "c@x.com"])
    clock.advance(10)
    summary = api.api.summary()
    assert summary.early_polls == 1
    assert [r.flags for r in api.api.log if r.method == "GET"] == [(), ("early_poll",), ()]
    assert summary.emails_submitted == 5
    assert summary.emails_submitted_twice == 1
    assert summary.emails_charged_twice == 1
    assert summary.credits_spent == 4
    assert summary.peak_requests_in_window == 5  # no rate limit: 60 s window
    assert summary.peak_emails_in_window == 5  # no usage limit: 1 h window
    assert json.loads(json.dumps(summary.as_dict()))["requests_by_status"] == {"200": 3, "202": 2}


async def test_early_poll_counts_even_if_the_batch_finished_meanwhile(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(emails_per_second=10, retry_after=5)
    href = (await api.post(emails(2))).headers["Location"]
    clock.advance(0.1)
    assert (await api.get(href)).headers["Retry-After"] == "5"  # processing
    clock.advance(1)
    assert (await api.get(href)).body["status"] == "completed"  # 4 s too early
    await api.get(href)  # terminal answers carry no Retry-After: never early after that
    other = (await api.post(emails(50, "b"))).headers["Location"]
    clock.advance(0.1)
    await api.get(other)
    await api.cancel(other)
    await api.get(other)  # right after the cancel's terminal answer: fine
    assert api.api.summary().early_polls == 1


# -- credits -----------------------------------------------------------------------------


async def test_credits_reject_mode(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(credits=100, emails_per_second=10)
    refused = await api.post(emails(101))
    assert (refused.status, codes(refused)) == (402, ["insufficient_credits"])
    assert (await api.post(emails(60))).status == 202
    refused = await api.post(emails(50, "b"))  # 60 are reserved by the running validation
    assert refused.status == 402
    clock.advance(10)
    summary = api.api.summary()
    assert (summary.validations, summary.credits_spent, summary.credits_remaining) == (1, 60, 40)
    api.api.add_credits(10)
    assert (await api.post(emails(50, "b"))).status == 202


async def test_credits_async_mode_errors_when_balance_runs_out(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(credits=150, credits_mode="async", emails_per_second=100)
    first = (await api.post(emails(100))).headers["Location"]
    second_reply = await api.post(emails(100, "b"))
    assert second_reply.status == 202
    second = second_reply.headers["Location"]
    clock.advance(0.5)
    assert (await api.get(second)).body["status"] == "processing"
    clock.advance(5)
    assert (await api.get(first)).body["status"] == "completed"
    reply = await api.get(second)
    assert reply.body["status"] == "error"
    assert [e["code"] for e in reply.body["_errors"]] == ["insufficient_credits"]
    assert len(reply.body["results"]) == 50
    assert api.api.summary().credits_remaining == 0


async def test_admin_endpoints_skip_auth_limits_and_log(open_api: OpenApi) -> None:
    api = await open_api(credits=5, rate_limit=parse_limit("1/minute"))
    assert (await api.post(emails(5))).status == 202
    async with aiohttp.ClientSession(api.url) as anonymous:
        async with anonymous.post("/_fake/credits", json={"add": 7}) as response:
            # 5 + 7: the POST only reserved its 5 credits, none are spent until processed
            assert await response.json() == {"credits_remaining": 12}
        async with anonymous.get("/_fake/summary") as response:
            summary = await response.json()
        async with anonymous.get("/_fake/log") as response:
            log = await response.json()
    assert summary["requests"] == 1 and summary["validations"] == 1
    assert summary["requests_by_status"] == {"202": 1}
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/email-validations", 202)
    ]


# -- faults ------------------------------------------------------------------------------


async def test_fail_5xx_creates_nothing(open_api: OpenApi) -> None:
    api = await open_api(fail_5xx=1.0)
    reply = await api.post(["a@x.com"])
    assert (reply.status, codes(reply)) == (500, ["internal_server_error"])
    summary = api.api.summary()
    assert (summary.validations, summary.emails_submitted) == (0, 0)
    assert summary.requests_by_flag == {"fail_5xx": 1}


async def test_fail_5xx_after_accept_creates_and_charges_then_answers_500(
    open_api: OpenApi, clock: ManualClock
) -> None:
    api = await open_api(fail_5xx_after_accept=1.0, credits=10)
    reply = await api.post(["a@x.com", "b@x.com"])
    assert (reply.status, codes(reply)) == (500, ["internal_server_error"])
    clock.advance(5)
    summary = api.api.summary()
    assert (summary.validations, summary.credits_spent) == (1, 2)
    assert summary.requests_by_flag == {"fail_5xx_after_accept": 1}
    # A POST the API refuses anyway is answered as such: nothing was accepted.
    refused = await api.post([f"u{i}@x.com" for i in range(20)])
    assert refused.status == 402
    # GETs are never touched by it.
    assert (await api.get("/email-validations/nope")).status == 404


async def test_lower_case_headers_and_a_verbatim_retry_after(open_api: OpenApi) -> None:
    api = await open_api(lower_case_headers=True, retry_after_text="1e999", queue_seconds=9)
    async with api.session.post(
        "/email-validations", json={"emails": [{"email": "a@x.com"}]}
    ) as reply:
        names = [name.decode() for name, _ in reply.raw_headers]
        href = (await reply.json())["_links"]["self"]["href"]
    assert "location" in names and "date" in names
    assert all(name == name.lower() for name in names if name not in ("Content-Length", "Server"))
    async with api.session.get(href) as reply:
        raw = dict((k.decode(), v.decode()) for k, v in reply.raw_headers)
    assert raw["retry-after"] == "1e999"


async def test_drop_creates_the_batch_then_hangs_up(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(drop=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.post(["a@x.com"])
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.get("/email-validations/x")
    clock.advance(5)
    summary = api.api.summary()
    assert (summary.validations, summary.credits_spent) == (1, 1)
    # aiohttp's client silently retries an idempotent request once after a disconnect
    assert [(r.method, r.status, r.flags) for r in api.api.log[:2]] == [
        ("POST", 0, ("dropped",)),
        ("GET", 0, ("dropped",)),
    ]
    assert set(summary.requests_by_status) == {0}


async def test_spurious_429_is_not_counted_as_rate_limited(open_api: OpenApi) -> None:
    api = await open_api(spurious_429=1.0, retry_after=3)
    reply = await api.post(["a@x.com"])
    assert (reply.status, codes(reply), reply.headers["Retry-After"]) == (
        429,
        ["rate_limit_exceeded"],
        "3",
    )
    summary = api.api.summary()
    assert (summary.rate_limited, summary.validations) == (0, 0)
    assert summary.requests_by_flag == {"spurious_429": 1}


async def test_batch_error_keeps_the_processed_half(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(batch_error=1.0)
    href = await completed(api, clock, emails(10))
    reply = await api.get(href)
    assert reply.body["status"] == "error"
    assert [e["code"] for e in reply.body["_errors"]] == ["internal_server_error"]
    assert [r["email"] for r in reply.body["results"]] == emails(10)[:5]
    assert api.api.summary().credits_spent == 5


async def test_upper_case_and_unnormalised_results(open_api: OpenApi, clock: ManualClock) -> None:
    api = await open_api(upper_case_results=True)
    href = await completed(api, clock, ["b+x@x.com", "a@x.com"])
    results = (await api.get(href)).body["results"]
    assert [r["email"] for r in results] == ["A@X.COM", "B@X.COM"]
    assert (results[1]["result"], results[1]["catch_all"]) == verdict_for("b@x.com")

    raw = await open_api(normalise_results=False)
    href = await completed(raw, clock, ["B+x@x.com", "b@x.com", "b@x.com"])
    assert [r["email"] for r in (await raw.get(href)).body["results"]] == ["B+x@x.com", "b@x.com"]


async def test_latency_delays_every_response(open_api: OpenApi) -> None:
    api = await open_api(latency=0.2)
    started = time.perf_counter()
    assert (await api.get("/email-validations/x")).status == 404
    assert time.perf_counter() - started >= 0.2


async def test_http_date_retry_after_with_clock_skew(open_api: OpenApi) -> None:
    api = await open_api(retry_after=30, retry_after_http_date=True, clock_skew=3600)
    href = (await api.post(["a@x.com"])).headers["Location"]
    reply = await api.get(href)
    date = parsedate_to_datetime(reply.headers["Date"]).timestamp()
    retry_at = parsedate_to_datetime(reply.headers["Retry-After"]).timestamp()
    assert abs(date - (time.time() + 3600)) < 5
    assert 30 <= retry_at - date <= 32


# -- verdicts and the command line -----------------------------------------------------------


def test_verdicts_are_deterministic_and_plausibly_mixed() -> None:
    sample = [f"person{i}@company{i % 97}.com" for i in range(20_000)]
    verdicts = [verdict_for(email, seed=1) for email in sample]
    shares = Counter(result for result, _ in verdicts)
    for result, share in {
        "deliverable": 0.60,
        "risky": 0.15,
        "unknown": 0.10,
        "undeliverable": 0.15,
    }.items():
        assert abs(shares[result] / len(sample) - share) < 0.02
    assert abs(sum(c for _, c in verdicts) / len(sample) - 0.20) < 0.02
    assert verdicts == [verdict_for(email, seed=1) for email in sample]
    assert verdicts != [verdict_for(email, seed=2) for email in sample]
    assert verdict_for(" Jane+x@Example.COM") == verdict_for("jane@example.com")
    assert canonical_email(" Jane+x@Example.COM ") == "jane@example.com"


def test_mock_server_help_lists_every_switch() -> None:
    result = CliRunner().invoke(mock_server, ["--help"])
    assert result.exit_code == 0
    # Each switch is named after its field; `rejects` is given once per email, as --reject.
    named = {"rejects": "reject"}
    switches = {
        f"--{named.get(f.name, f.name).replace('_', '-')}"
        for f in fields(FakeConfig)
        if f.name != "clock"
    }
    for switch in sorted(switches | {"--host", "--port"}):
        assert switch in result.output
    assert "Example" in result.output
    bad = CliRunner().invoke(mock_server, ["--rate-limit", "lots"])
    assert bad.exit_code == 2 and "COUNT/PERIOD" in bad.output


async def test_mock_server_serves_until_interrupted() -> None:
    code = "from ample_batch.fake.command import mock_server; mock_server()"
    args = ["--port", "0", "--api-key", "k", "--credits", "3"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=subprocess.PIPE, env={**os.environ}
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert (
            line.startswith("Fake Amplemarket API on http://127.0.0.1:") and "(api key: k)" in line
        )
        url = line.split()[4]
        async with aiohttp.ClientSession(url) as session, session.get("/_fake/summary") as reply:
            assert (await reply.json())["credits_remaining"] == 3
    finally:
        process.send_signal(2)
        assert await asyncio.wait_for(process.wait(), 10) == 0

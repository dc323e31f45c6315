"""The client against the fake API over loopback: no mocks, real HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import time

import pytest
from aiohttp import web
from helpers import (
    FAST_RETRY,
    KEY,
    FakeInThread,
    ManualClock,
    cli,
    lead_rows,
    make_client,
    write_leads,
)

from ample_batch.api.client import Unthrottled
from ample_batch.api.origin import check_base_url
from ample_batch.api.responses import Validation, failed_validation, parse_retry_after
from ample_batch.api.retries import RetryPolicy
from ample_batch.errors import (
    BadRequest,
    InputError,
    InsufficientCredits,
    NotFound,
    RateLimited,
    RetryInterrupted,
    SubmissionUnknown,
    TransientError,
    Unauthorized,
    UnsafeLink,
    UsageLimited,
    ValidationFailed,
)
from ample_batch.fake.config import verdict_for
from ample_batch.limits import Limit
from ample_batch.options import ApiOptions, ValidateOptions
from ample_batch.pipeline.validate import validate
from ample_batch.quota.clock import VirtualClock
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler


def emails(n: int, domain: str = "example.com") -> list[str]:
    return [f"user{i:05d}@{domain}" for i in range(n)]


async def collect(client, validation):
    results = []
    pages = 0
    async for page in client.pages(validation):
        pages += 1
        results.extend(page.results)
    return results, pages


async def test_2345_emails_read_back_through_every_page(fake_api, session) -> None:
    fake = await fake_api(retry_after=0.05, emails_per_second=50000)
    client = make_client(session, fake.url)
    sent = emails(2345)
    validation = await client.start(sent)
    assert validation.status == "queued"
    assert validation.href == f"/email-validations/{validation.id}"
    done = await client.wait(validation)
    assert done.status == "completed"
    results, pages = await collect(client, done)
    assert pages == 24
    assert [r.email for r in results] == sorted(sent)
    for r in results:
        assert (r.result, r.catch_all) == verdict_for(r.email)
    summary = fake.api.summary()
    assert summary.credits_spent == 2345
    assert summary.early_polls == 0


async def test_retry_after_is_honoured(fake_api, session) -> None:
    fake = await fake_api(retry_after=0.2, queue_seconds=0.3, emails_per_second=2000)
    client = make_client(session, fake.url)
    polls: list[Validation] = []
    done = await client.wait(await client.start(emails(1000)), on_poll=polls.append)
    assert done.status == "completed"
    assert len(polls) >= 3, "the validation should have been polled while queued/processing"
    summary = fake.api.summary()
    assert summary.early_polls == 0
    assert summary.requests_by_flag.get("early_poll", 0) == 0


async def test_http_date_retry_after_with_skewed_server_clock(fake_api, session) -> None:
    fake = await fake_api(
        retry_after=1, retry_after_http_date=True, clock_skew=-1.0, queue_seconds=0.5
    )
    client = make_client(session, fake.url)
    validation = await client.get((await client.start(emails(10))).href)
    assert validation.status == "queued"
    assert validation.retry_after is not None and 0 < validation.retry_after <= 2.0
    done = await client.wait(validation)
    assert done.status == "completed"
    assert fake.api.summary().early_polls == 0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    server_now = email.utils.formatdate(now + 10, usegmt=True)
    # Measured against the server's own Date header, not our clock.
    assert parse_retry_after(later, server_now) == pytest.approx(20, abs=1)


async def test_wrong_key_is_unauthorized(fake_api, session) -> None:
    fake = await fake_api()
    client = make_client(session, fake.url, key="wrong")
    with pytest.raises(Unauthorized, match="key was rejected") as info:
        await client.start(emails(3))
    assert "wrong" not in str(info.value)
    with pytest.raises(Unauthorized):
        await client.check_key()
    await make_client(session, fake.url).check_key()


async def test_out_of_credits_on_post(fake_api, session) -> None:
    fake = await fake_api(credits=5)
    client = make_client(session, fake.url)
    with pytest.raises(InsufficientCredits, match="top up"):
        await client.start(emails(6))
    assert fake.api.summary().validations == 0


async def test_out_of_credits_during_validation(fake_api, session) -> None:
    fake = await fake_api(credits=5, credits_mode="async", retry_after=0.05)
    client = make_client(session, fake.url)
    done = await client.wait(await client.start(emails(8)))
    assert done.status == "error"
    assert isinstance(failed_validation(done), InsufficientCredits)
    results, _ = await collect(client, done)
    assert len(results) == 5


async def test_usage_limit_429_is_typed_and_not_retried(fake_api, session) -> None:
    fake = await fake_api(usage_limit=Limit(10, 60))
    client = make_client(session, fake.url)
    await client.start(emails(10))
    with pytest.raises(UsageLimited) as info:
        await client.start(emails(1, "other.org"))
    assert info.value.retry_after is not None and info.value.retry_after > 0
    assert fake.api.summary().validations == 1


async def test_rate_limit_429_retries_then_raises(fake_api, session) -> None:
    fake = await fake_api(spurious_429=1.0)
    client = make_client(session, fake.url, policy=RetryPolicy(attempts=2, wait_initial=0.01))
    with pytest.raises(RateLimited):
        await client.get("/email-validations/x")
    assert fake.api.summary().requests == 2


async def test_a_5xx_with_an_error_body_to_a_post_is_fate_unknown(fake_api, session) -> None:
    # The fake creates nothing here, but the client cannot know that from a 500 with _errors.
    fake = await fake_api(fail_5xx=1.0)
    client = make_client(session, fake.url)
    with pytest.raises(SubmissionUnknown, match=r"500.*may have been accepted"):
        await client.start(emails(3))
    assert [(r.method, r.status) for r in fake.api.log] == [("POST", 500)]


async def test_a_5xx_after_the_server_accepted_is_never_resent(fake_api, session) -> None:
    fake = await fake_api(fail_5xx_after_accept=1.0)
    client = make_client(session, fake.url)
    with pytest.raises(SubmissionUnknown, match="may have been accepted"):
        await client.start(emails(3))
    assert [(r.method, r.status) for r in fake.api.log] == [("POST", 500)]
    summary = fake.api.summary()
    assert summary.validations == 1  # it IS there, and charged: a resend would pay twice
    assert summary.emails_submitted == 3
    # GETs still retry a 500 as usual.
    with pytest.raises(NotFound):
        await client.get("/email-validations/nope")


class PauseRecorder(Unthrottled):
    """A throttle that never waits and remembers every pause asked of it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def pause_requests(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def test_any_429_to_a_post_refuses_that_batch_and_pauses_requests(fake_api, session) -> None:
    fake = await fake_api(spurious_429=1.0, retry_after=0.2)
    throttle = PauseRecorder()
    client = make_client(session, fake.url, throttle=throttle)
    with pytest.raises(UsageLimited, match="429") as info:
        await client.start(emails(3))
    assert info.value.retry_after == pytest.approx(0.2)
    assert throttle.pauses == [pytest.approx(0.2)]
    assert [(r.method, r.status) for r in fake.api.log] == [("POST", 429)]  # not resent
    assert fake.api.summary().validations == 0


def test_a_run_through_429s_on_its_posts_completes_and_pays_once(tmp_path) -> None:
    # Each 429 to a POST puts that batch back in the plan; the engine submits it again later.
    src = write_leads(tmp_path / "leads.csv", lead_rows(600))
    with FakeInThread(spurious_429=0.3, retry_after=0.05, emails_per_second=50000) as fake:
        api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
        options = ValidateOptions(input=src, state_dir=tmp_path / "s", api=api, chunk_size=50)
        summary = validate(options)
        fake_summary = fake.summary()
        posts = [r for r in fake.api.log if r.method == "POST"]
    assert summary.complete and summary.possible_double_charges == 0
    assert any(r.status == 429 for r in posts)
    assert fake_summary.validations == 12
    assert fake_summary.credits_spent == 600 and fake_summary.emails_charged_twice == 0


async def test_lower_cased_header_names_are_honoured(fake_api, session) -> None:
    fake = await fake_api(lower_case_headers=True, retry_after=0.3, queue_seconds=0.7)
    throttle = PauseRecorder()
    client = make_client(session, fake.url, throttle=throttle)
    polls: list[Validation] = []
    done = await client.wait(await client.start(emails(20)), on_poll=polls.append)
    assert done.status == "completed"
    assert polls[0].retry_after == pytest.approx(0.3)
    assert fake.api.summary().early_polls == 0  # FAST_RETRY's own first poll would be early
    limited = await fake_api(lower_case_headers=True, spurious_429=1.0, retry_after=0.25)
    client = make_client(session, limited.url, throttle=throttle)
    with pytest.raises(RateLimited) as info:
        await client.get("/email-validations/x")
    assert info.value.retry_after == pytest.approx(0.25)
    assert throttle.pauses == [pytest.approx(0.25)] * 4


def test_lower_cased_headers_are_honoured_with_aiohttp_pure_python_parser(tmp_path) -> None:
    # aiohttp's C parser happens to restore the canonical case of names it knows; its pure
    # Python parser (no compiled wheel, or AIOHTTP_NO_EXTENSIONS) keeps them as sent.
    src = write_leads(tmp_path / "leads.csv", lead_rows(30))
    with FakeInThread(lower_case_headers=True, retry_after=3.0, queue_seconds=3.5) as fake:
        args = ["validate", str(src), "--base-url", fake.url, "--state-dir", str(tmp_path / "s")]
        done = cli(*args, "-q", env={"AIOHTTP_NO_EXTENSIONS": "1"})
        assert done.returncode == 0, done.stderr
        summary = fake.summary()
    # Without Retry-After the client polls at 1 s then 2 s later, before the 3 s asked for.
    assert summary.early_polls == 0
    assert summary.validations == 1


async def test_a_lower_cased_location_on_the_202_is_the_validation_href(session) -> None:
    async def handler(request: web.Request) -> web.Response:
        response = web.json_response({"id": "v9", "status": "queued"}, status=202)
        response.headers["location"] = "/email-validations/v9?from=location"
        return response

    runner, url, _ = await _serve(handler)
    try:
        validation = await make_client(session, url).start(["a@x.co"])
        assert validation.href == "/email-validations/v9?from=location"
    finally:
        await runner.cleanup()


HOSTILE_RETRY_AFTER = [
    "86400",
    "1e999",
    "inf",
    "nan",
    "-5",
    "soon",
    "Fri, 31 Dec 9999 23:59:59 GMT",
]


@pytest.mark.parametrize("text", HOSTILE_RETRY_AFTER)
async def test_a_hostile_retry_after_on_a_429_is_bounded(fake_api, session, text) -> None:
    fake = await fake_api(spurious_429=1.0, retry_after_text=text)
    throttle = PauseRecorder()
    policy = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05, max_retry_after=0.5)
    client = make_client(session, fake.url, throttle=throttle, policy=policy)
    started = time.monotonic()
    with pytest.raises(RateLimited) as info:
        await client.get("/email-validations/x")
    assert time.monotonic() - started < 3
    wait = info.value.retry_after
    assert wait is None or 0 <= wait <= 0.5
    assert all(0 < pause <= 0.5 for pause in throttle.pauses)
    with pytest.raises(UsageLimited) as refused:
        await client.start(emails(1))
    assert refused.value.retry_after is None or 0 <= refused.value.retry_after <= 0.5


@pytest.mark.parametrize("text", HOSTILE_RETRY_AFTER)
async def test_a_hostile_retry_after_on_a_poll_is_bounded(fake_api, session, text) -> None:
    fake = await fake_api(retry_after_text=text, retry_after=0.2, queue_seconds=1.0)
    policy = RetryPolicy(
        attempts=2, first_poll=0.2, default_poll=0.2, min_poll=0.2, max_retry_after=0.5
    )
    client = make_client(session, fake.url, policy=policy)
    validation = await client.get((await client.start(emails(5))).href)
    assert validation.retry_after is None or 0.2 <= validation.retry_after <= 0.5
    done = await asyncio.wait_for(client.wait(validation), timeout=10)
    assert done.status == "completed"
    polls = [r.time for r in fake.api.log if r.method == "GET"]
    assert len(polls) <= 8  # about 1 s of queue at one poll per 0.2-0.5 s; never a busy loop
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(polls))


async def test_a_zero_retry_after_on_a_poll_waits_the_minimum_interval(fake_api, session) -> None:
    fake = await fake_api(retry_after_text="0", queue_seconds=0.6)
    client = make_client(session, fake.url, policy=RetryPolicy(min_poll=0.25))
    validation = await client.get((await client.start(emails(5))).href)
    assert validation.retry_after == 0.25
    await asyncio.wait_for(client.wait(validation), timeout=10)
    assert len([r for r in fake.api.log if r.method == "GET"]) <= 5


async def test_post_is_not_resent_after_an_ambiguous_failure(fake_api, session) -> None:
    fake = await fake_api(drop=1.0)
    client = make_client(session, fake.url)
    with pytest.raises(SubmissionUnknown, match="may have been accepted"):
        await client.start(emails(3))
    summary = fake.api.summary()
    posts = [r for r in fake.api.log if r.method == "POST"]
    assert len(posts) == 1
    assert summary.validations == 1  # the fake did create it: resending would pay twice


async def test_gets_retry_dropped_connections(fake_api, session) -> None:
    fake = await fake_api(drop=1.0)
    client = make_client(session, fake.url)
    with pytest.raises(TransientError):
        await client.get("/email-validations/nope")
    assert len(fake.api.log) == 4


async def test_bad_request_and_not_found(fake_api, session) -> None:
    fake = await fake_api()
    client = make_client(session, fake.url)
    with pytest.raises(BadRequest, match="100000"):
        await client.start(emails(100_001))
    with pytest.raises(NotFound):
        await client.get("/email-validations/00000000-0000-0000-0000-000000000001")
    with pytest.raises(ValueError):
        await client.start([])


async def test_validation_ending_in_error(fake_api, session) -> None:
    fake = await fake_api(batch_error=1.0, retry_after=0.05)
    client = make_client(session, fake.url)
    done = await client.wait(await client.start(emails(50)))
    assert done.status == "error"
    failure = failed_validation(done)
    assert isinstance(failure, ValidationFailed)
    assert failure.codes


async def test_cancel_keeps_partial_results(fake_api, session) -> None:
    clock = ManualClock()
    fake = await fake_api(emails_per_second=100, clock=clock, retry_after=0.05)
    client = make_client(session, fake.url)
    validation = await client.start(emails(1000))
    clock.advance(2.5)
    canceled = await client.cancel(validation.id)
    assert canceled.status == "canceled"
    results, _ = await collect(client, canceled)
    assert len(results) == 250
    assert fake.api.summary().credits_spent == 250
    again = await client.cancel(validation.href)
    assert again.status == "canceled"


def test_a_base_url_with_a_password_is_refused_without_echoing_it() -> None:
    for url in ("https://u:s3cr3t@api.amplemarket.com", "http://s3cr3t@127.0.0.1:8025"):
        with pytest.raises(InputError, match="user name or password") as info:
            check_base_url(url)
        assert "s3cr3t" not in str(info.value)


def test_the_cli_refuses_a_base_url_with_a_password_in_one_line(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(3))
    url = "https://u:s3cr3t@api.amplemarket.com"
    done = cli("validate", str(src), "--base-url", url, "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in done.stderr + done.stdout


def test_plain_http_only_for_loopback() -> None:
    assert check_base_url("http://127.0.0.1:8025/") == "http://127.0.0.1:8025"
    assert check_base_url("http://localhost:1") == "http://localhost:1"
    assert check_base_url("http://[::1]:8025") == "http://[::1]:8025"
    assert check_base_url("https://api.amplemarket.com") == "https://api.amplemarket.com"
    for url in ("http://api.amplemarket.com", "http://10.0.0.5", "ftp://x", "nonsense"):
        with pytest.raises(InputError):
            check_base_url(url)


async def test_key_never_in_repr(session) -> None:
    client = make_client(session, "http://127.0.0.1:9", key="sk-secret-123")
    assert "sk-secret-123" not in repr(client)
    assert "sk-secret-123" not in repr(vars(client))


# A tiny real server (not a mock) that misbehaves in ways the fake API does not.
async def _serve(handler) -> tuple[web.AppRunner, str, list[web.Request]]:
    seen: list[web.Request] = []

    async def wrapped(request: web.Request) -> web.Response:
        seen.append(request)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", wrapped)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}", seen


def _page(next_href: str | None) -> dict:
    links = {"self": {"href": "/email-validations/v1"}}
    if next_href:
        links["next"] = {"href": next_href}
    return {
        "id": "v1",
        "object": "email_validation",
        "status": "completed",
        "results": [{"email": "a@x.co", "result": "deliverable", "catch_all": False}],
        "_links": links,
    }


async def test_foreign_origin_next_link_is_refused(session) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(_page("https://evil.example.net/steal?page[after]=a"))

    runner, url, seen = await _serve(handler)
    try:
        client = make_client(session, url)
        first = await client.get("/email-validations/v1")
        with pytest.raises(UnsafeLink, match="another origin"):
            await collect(client, first)
        assert len(seen) == 1
    finally:
        await runner.cleanup()


async def test_repeated_next_link_is_an_error_not_a_loop(session) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(_page("/email-validations/v1?page[size]=100&page[after]=a@x.co"))

    runner, url, seen = await _serve(handler)
    try:
        client = make_client(session, url)
        first = await client.get("/email-validations/v1")
        with pytest.raises(UnsafeLink, match="repeated"):
            await collect(client, first)
        assert len(seen) == 2
        # The cursor went out exactly as the server wrote it: brackets unencoded.
        assert seen[1].raw_path == "/email-validations/v1?page[size]=100&page[after]=a@x.co"
        assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    finally:
        await runner.cleanup()


async def test_redirects_are_not_followed(session) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example.net/")

    runner, url, seen = await _serve(handler)
    try:
        with pytest.raises(UnsafeLink, match="redirect"):
            await make_client(session, url).get("/email-validations/v1")
        assert len(seen) == 1
    finally:
        await runner.cleanup()


async def test_connection_refused_is_transient(session) -> None:
    client = make_client(session, "http://127.0.0.1:9")
    with pytest.raises(TransientError, match="cannot reach"):
        await client.start(["a@x.co"])


async def test_request_limiter_holds_60_per_5s_over_a_burst_of_polls(fake_api, session) -> None:
    # One virtual clock drives both the scheduler's waits and the fake's view of time, so
    # a burst spanning several windows runs in milliseconds and is judged exactly.
    clock = VirtualClock()
    fake = await fake_api(clock=clock.now, rate_limit=Limit(60, 5.0), queue_seconds=1e9)
    with Scheduler(ScheduleConfig(rate_limit=Limit(60, 5.0)), clock) as scheduler:
        client = make_client(session, fake.url, throttle=scheduler)
        validation = await client.start(emails(5))
        t0 = clock.now()
        polls = await asyncio.gather(*(client.get(validation.href) for _ in range(200)))
        assert {p.status for p in polls} == {"queued"}
        assert clock.now() - t0 >= 3 * 5.0
    summary = fake.api.summary()
    assert summary.requests == 201
    assert summary.rate_limited == 0
    assert summary.peak_requests_in_window == 60


async def test_an_unreadable_answer_to_a_post_is_never_resent(session) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=202, text="<html>accepted</html>", content_type="text/html")

    runner, url, seen = await _serve(handler)
    try:
        with pytest.raises(SubmissionUnknown, match="unreadable"):
            await make_client(session, url).start(["a@x.co"])
        assert len(seen) == 1
    finally:
        await runner.cleanup()


def test_a_key_with_control_characters_is_bad_input() -> None:
    with pytest.raises(InputError, match="control characters"):
        make_client(None, "http://127.0.0.1:9", key="abc\n")  # type: ignore[arg-type]


async def _first_answer(fake, count: int) -> None:
    """Wait until the fake has answered `count` requests (the test's own guard: 5 s)."""
    async with asyncio.timeout(5):
        while len(fake.api.log) < count:
            await asyncio.sleep(0.01)


async def test_a_stop_ends_the_wait_before_a_retry_at_once(fake_api, session) -> None:
    fake = await fake_api(spurious_429=1.0, retry_after=600)
    stop = asyncio.Event()
    client = make_client(session, fake.url, stop=stop)
    requests = [functools.partial(client.get, f"/email-validations/{v}") for v in ("x", "y")]
    for answered, request in enumerate(requests, start=1):
        stop.clear()
        task = asyncio.create_task(request())
        await _first_answer(fake, answered)  # a 429 asking for 600 s: the client now waits
        stop.set()
        started = time.monotonic()
        with pytest.raises(RetryInterrupted, match="nothing was in flight") as info:
            await asyncio.wait_for(task, timeout=5)
        assert time.monotonic() - started < 1
        assert isinstance(info.value.__cause__, RateLimited)
    # One request each, both answered 429: no retry went out after the stop.
    assert [(r.method, r.status) for r in fake.api.log] == [("GET", 429), ("GET", 429)]
    assert fake.api.summary().validations == 0


async def test_a_stop_ends_a_wait_for_a_paused_request_slot(fake_api, session) -> None:
    fake = await fake_api()
    stop = asyncio.Event()
    with Scheduler(ScheduleConfig()) as scheduler:
        client = make_client(session, fake.url, throttle=scheduler, stop=stop)
        stop.set()
        # A stop does not hold back a request that has nothing to wait for...
        with pytest.raises(NotFound):
            await client.get("/email-validations/x")
        # ...but a 429 elsewhere paused every request for 10 minutes: that wait is cut.
        scheduler.pause_requests(600)
        with pytest.raises(RetryInterrupted, match="request slot"):
            await asyncio.wait_for(client.get("/email-validations/x"), timeout=5)
    assert len(fake.api.log) == 1

"""The fake API's HTTP face: aiohttp handlers over the pure model in `state.py`.

Every API request goes through one middleware, in this order: rate limit (429, not counted
toward the window), bearer key (401), spurious 429, injected 500 (nothing is created or
changed), injected 500 after accept (a POST takes effect first), the handler, then an
injected drop (a POST or PATCH takes effect first; a GET is dropped unanswered). Admin
endpoints under `/_fake/` skip all of that and are not logged.

Choices made where the API docs are silent:

- PATCH on a validation that is already terminal answers 200 with the object unchanged: a
  cancel that lost the race with completion is not an error, and the body says what really
  happened. Any PATCH body other than exactly `{"status": "canceled"}` is a 400.
- Retry-After goes on GETs while queued/processing and on every 429, never on the 202. Values
  are rounded up to the millisecond: "1", "0.2", "1.5"; or an HTTP-date, rounded up to the
  second, when `retry_after_http_date` is set.
- 429 codes: `rate_limit_exceeded` (the rate limit, or a spurious one) and
  `usage_limit_exceeded`. A POST with more emails than the usage window can ever hold is a
  400 `unsupported_value` (waiting would not help).
- POST and PATCH bodies must be sent as `application/json` or `application/vnd.amp+json`.
- Pages and cursors follow the returned email; `page[...]` parameters are checked on every
  GET, but results are only listed once the validation is terminal (`[]` before).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .config import FakeConfig, verdict_for
from .problems import (
    FakeProblem,
    PageQuery,
    parse_cancel,
    parse_page_query,
    parse_submission,
    rate_limited,
)
from .state import TERMINAL, FakeState, Validation
from .summary import EARLY_POLL_TOLERANCE, FakeSummary, RequestRecord, summarise

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


JSON_TYPES = frozenset({"application/json", "application/vnd.amp+json"})


MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class _Exchange:
    """What the middleware knows about the request being handled: arrival time and flags."""

    now: float
    flags: list[str] = field(default_factory=list)


_EXCHANGE: ContextVar[_Exchange] = ContextVar("ample_batch_fake_exchange")


class _Drop(Exception):
    """Close the connection without answering."""


class FakeApi:
    """A faithful fake of the Amplemarket email-validation API, as an aiohttp application.

        >>> api = FakeApi(FakeConfig(credits=1000))
        >>> api.summary().validations
        0

    Serve `api.app` with `start_fake`, aiohttp's `TestServer`, or `ample-batch mock-server`.
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.state = FakeState(self.config)
        self.log: list[RequestRecord] = []
        self._gets: dict[str, int] = {}
        self.app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY_BYTES)
        self.app.add_routes(
            [
                web.post("/email-validations", self._start),
                web.get("/email-validations/{id}", self._retrieve),
                web.patch("/email-validations/{id}", self._cancel),
                web.get("/_fake/summary", self._admin_summary),
                web.post("/_fake/credits", self._admin_credits),
                web.get("/_fake/log", self._admin_log),
            ]
        )

    def summary(self) -> FakeSummary:
        """Counters so far (validations are first brought up to the current time)."""
        self.state.advance(self.config.clock())
        return summarise(self.state, self.log)

    def add_credits(self, count: int) -> None:
        """Add `count` credits to the balance (no effect when credits are unlimited)."""
        self.state.add_credits(count)

    # -- the pipeline every API request goes through ------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        if self.config.arrival_jitter > 0:
            await asyncio.sleep(self.state.rng.uniform(0, self.config.arrival_jitter))
        exchange = _Exchange(self.config.clock())
        token = _EXCHANGE.set(exchange)
        try:
            return await self._exchange(request, handler, exchange)
        finally:
            _EXCHANGE.reset(token)

    async def _exchange(
        self, request: web.Request, handler: Handler, exchange: _Exchange
    ) -> web.StreamResponse:
        now, flags = exchange.now, exchange.flags
        try:
            response = await self._pipeline(request, handler, now, flags)
        except FakeProblem as problem:
            flags.extend(problem.flags)
            response = self._error_response(problem)
        except _Drop:
            flags.append("dropped")
            self._record(request, now, 0, flags)
            await self._delay()
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # never sent: the transport is gone
        self._record(request, now, response.status, flags)
        await self._delay()
        response.headers["Date"] = formatdate(self._wall_clock(), usegmt=True)
        if self.config.lower_case_headers:
            for name, value in list(response.headers.items()):
                del response.headers[name]
                response.headers.add(name.lower(), value)
        return response

    async def _pipeline(
        self, request: web.Request, handler: Handler, now: float, flags: list[str]
    ) -> web.StreamResponse:
        state, config = self.state, self.config
        wait = state.rate_wait(now)
        if wait > 0:
            raise rate_limited(wait, flag="rate_limited")
        state.admit_request(now)
        self._authenticate(request)
        if state.roll(config.spurious_429):
            raise rate_limited(config.retry_after, flag="spurious_429")
        if state.roll(config.fail_5xx):
            raise FakeProblem.one(
                500, "internal_server_error", "Something went wrong.", flags=("fail_5xx",)
            )
        if request.method == "POST" and state.roll(config.fail_5xx_after_accept):
            await self._call(handler, request)  # a refusal (402, 400...) is answered as such
            raise FakeProblem.one(
                500,
                "internal_server_error",
                "Something went wrong.",
                flags=("fail_5xx_after_accept",),
            )
        if not state.roll(config.drop):
            return await self._call(handler, request)
        if request.method != "GET":
            try:
                await self._call(handler, request)
            except FakeProblem as problem:
                flags.extend(problem.flags)
        raise _Drop

    async def _call(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # routing: unknown path or method
            code = "method_not_allowed" if exc.status == 405 else "not_found"
            raise FakeProblem.one(exc.status, code, f"{request.method} {request.path}") from None

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.config.api_key:
            raise FakeProblem.one(
                401,
                "unauthorized",
                "The API credentials used are either invalid, or the user is not authorized",
                source={"header": "Authorization"},
            )

    def _record(self, request: web.Request, now: float, status: int, flags: list[str]) -> None:
        self.log.append(RequestRecord(now, request.method, request.raw_path, status, tuple(flags)))

    async def _delay(self) -> None:
        if self.config.latency > 0:
            await asyncio.sleep(self.config.latency)

    def _wall_clock(self) -> float:
        return time.time() + self.config.clock_skew

    def retry_after_header(self, seconds: float) -> str:
        """`seconds` as a Retry-After value: "1", "0.2", or an HTTP-date if so configured."""
        if self.config.retry_after_text is not None:
            return self.config.retry_after_text
        if self.config.retry_after_http_date:
            return formatdate(math.ceil(self._wall_clock() + seconds), usegmt=True)
        millis = math.ceil(round(seconds * 1000, 6))
        return str(millis // 1000) if millis % 1000 == 0 else str(millis / 1000)

    def _error_response(self, problem: FakeProblem) -> web.Response:
        response = web.json_response(problem.body(), status=problem.status)
        if problem.retry_after is not None:
            response.headers["Retry-After"] = self.retry_after_header(problem.retry_after)
        if problem.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    # -- API handlers ---------------------------------------------------------------------

    async def _start(self, request: web.Request) -> web.StreamResponse:
        emails = parse_submission(await _json_body(request), self.config.rejects)
        if self.config.post_fault is not None:
            raise _injected(self.config.post_fault)
        now = _EXCHANGE.get().now
        validation = self.state.submit(emails, now)
        response = web.json_response(self._view(validation, now, PageQuery()), status=202)
        response.headers["Location"] = validation.href
        return response

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        validation = self.state.find(request.match_info["id"])
        self._get_faults(validation, request)
        query = parse_page_query(request.query)
        now = _EXCHANGE.get().now
        self.state.advance(now)
        due = validation.poll_not_before
        if due is not None and now < due - EARLY_POLL_TOLERANCE:
            _EXCHANGE.get().flags.append("early_poll")
        response = web.json_response(self._view(validation, now, query))
        if validation.final is None:
            response.headers["Retry-After"] = self.retry_after_header(self.config.retry_after)
            validation.poll_not_before = now + self.config.retry_after
        else:
            validation.poll_not_before = None
        return response

    def _get_faults(self, validation: Validation, request: web.Request) -> None:
        """The injected faults of a GET of a validation, if any is due."""
        config = self.config
        self._gets[validation.id] = gets = self._gets.get(validation.id, 0) + 1
        if gets <= config.not_found_polls:
            raise FakeProblem.one(
                404, "not_found", f"Email validation {validation.id!r} was not found"
            )
        cursor = "page[after]" in request.query or "page[before]" in request.query
        status = config.get_fault or (config.page_fault if cursor else None)
        if status is not None:
            raise _injected(status)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        validation = self.state.find(request.match_info["id"])
        parse_cancel(await _json_body(request))
        query = parse_page_query(request.query)
        now = _EXCHANGE.get().now
        self.state.cancel(validation, now)
        validation.poll_not_before = None  # the answer is terminal and carries no Retry-After
        return web.json_response(self._view(validation, now, query))

    def _view(self, v: Validation, now: float, query: PageQuery) -> dict[str, Any]:
        status = v.status(now)
        if self.config.unknown_status is not None and status not in TERMINAL:
            status = self.config.unknown_status
        links: dict[str, dict[str, str]] = {"self": {"href": v.href}}
        results: list[dict[str, Any]] = []
        if status in TERMINAL:
            entries, has_prev, has_next = v.page(query)
            for entry in entries:
                result, catch_all = verdict_for(entry.email, self.config.seed)
                results.append(
                    {
                        "object": "email_validation_result",
                        "email": entry.email,
                        "result": result,
                        "catch_all": catch_all,
                    }
                )
            cursor = f"{v.href}?page[size]={query.size}"
            if has_prev:
                links["prev"] = {"href": f"{cursor}&page[before]={_quote(entries[0].email)}"}
            if has_next:
                links["next"] = {"href": f"{cursor}&page[after]={_quote(entries[-1].email)}"}
        body: dict[str, Any] = {
            "id": v.id,
            "object": "email_validation",
            "status": status,
            "results": results,
            "_links": links,
        }
        if not status:
            del body["status"]  # an empty unknown_status: the required field left out
        if v.errors:
            body["_errors"] = v.errors
        return body

    # -- admin endpoints (no auth, not logged, not rate limited) --------------------------

    async def _admin_summary(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.summary().as_dict())

    async def _admin_credits(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("add"), int):
            raise web.HTTPBadRequest(text='send {"add": <integer>}')
        self.add_credits(body["add"])
        return web.json_response({"credits_remaining": self.state.balance})

    async def _admin_log(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([record.as_dict() for record in self.log])


def _injected(status: int) -> FakeProblem:
    code = {402: "insufficient_credits", 404: "not_found"}.get(status, "unsupported_value")
    return FakeProblem.one(status, code, f"An injected {status} answer")


def _quote(email: str) -> str:
    return quote(email, safe="@")


async def _json_body(request: web.Request) -> Any:
    if request.content_type not in JSON_TYPES:
        raise FakeProblem.one(
            400,
            "unsupported_value",
            f"Content-Type must be application/json, got {request.content_type!r}",
            source={"header": "Content-Type"},
        )
    try:
        return json.loads(await request.read())
    except ValueError:
        raise FakeProblem.one(
            400, "unsupported_value", "The request body is not valid JSON", source={"pointer": ""}
        ) from None

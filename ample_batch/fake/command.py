"""`ample-batch mock-server`: serve the fake Amplemarket API until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click

from ..cli.params import LimitType
from .config import FakeConfig
from .server import start_fake

PROBABILITY = click.FloatRange(0.0, 1.0)


NON_NEGATIVE = click.FloatRange(min=0.0)


@click.command("mock-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port to listen on (0 = any free port; the URL line shows which).",
)
@click.option(
    "--api-key",
    default="test-key",
    show_default=True,
    help="Bearer token the fake accepts; any other key gets 401.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the verdicts and for the fault dice.",
)
@click.option(
    "--emails-per-second",
    type=click.FloatRange(min=0.0, min_open=True),
    default=2000.0,
    show_default=True,
    help="Processing speed once a validation leaves the queue.",
)
@click.option(
    "--queue-seconds",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="How long a new validation stays queued.",
)
@click.option(
    "--retry-after",
    type=NON_NEGATIVE,
    default=1.0,
    show_default=True,
    help="Retry-After seconds sent while a validation is queued or processing.",
)
@click.option(
    "--retry-after-http-date",
    is_flag=True,
    help="Send Retry-After as an HTTP-date instead of seconds.",
)
@click.option(
    "--retry-after-text",
    metavar="TEXT",
    default=None,
    help="Send this verbatim as every Retry-After (a broken server: 86400, 1e999, nan).",
)
@click.option(
    "--lower-case-headers",
    is_flag=True,
    help="Send response header names lower-cased, as proxies and HTTP/2 gateways do.",
)
@click.option(
    "--clock-skew",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds added to the server's wall clock (Date header, HTTP-dates).",
)
@click.option(
    "--rate-limit",
    type=LimitType(),
    default=None,
    help="Requests per rolling window, all endpoints, e.g. 500/minute. Default: none.",
)
@click.option(
    "--usage-limit",
    type=LimitType(),
    default=None,
    help="Emails submitted per rolling window, e.g. 15000/hour. Default: none.",
)
@click.option(
    "--credits",
    type=click.IntRange(min=0),
    default=None,
    help="Email credit balance. Default: unlimited.",
)
@click.option(
    "--credits-mode",
    type=click.Choice(["reject", "async"]),
    default="reject",
    show_default=True,
    help="reject: a POST over the balance gets 402; async: accepted, then the "
    "validation ends in error when the balance runs out.",
)
@click.option(
    "--normalise-results/--no-normalise-results",
    default=True,
    show_default=True,
    help="Return emails lower-cased with any +tag stripped.",
)
@click.option(
    "--upper-case-results",
    is_flag=True,
    help="Return emails in UPPER case (a fault to test result matching).",
)
@click.option(
    "--fail-5xx",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability of a 500 internal_server_error (nothing is created).",
)
@click.option(
    "--fail-5xx-after-accept",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability a POST is created and charged, then answered 500 all the same.",
)
@click.option(
    "--drop",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability of closing the connection unanswered (a POST is created first).",
)
@click.option(
    "--spurious-429",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability of a 429 with Retry-After not caused by any limit.",
)
@click.option(
    "--batch-error",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability a validation ends in status error halfway through.",
)
@click.option(
    "--latency",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Seconds added to every response.",
)
@click.option(
    "--reject",
    "rejects",
    metavar="EMAIL",
    multiple=True,
    help="Refuse this email with 400 unsupported_value, as if the API's syntax rule were "
    "stricter than ample-batch's (repeatable).",
)
@click.option(
    "--not-found-polls",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The first N GETs of each validation answer 404 (a replica not caught up yet).",
)
@click.option(
    "--get-fault",
    type=click.IntRange(300, 599),
    default=None,
    help="HTTP status answered to every GET of a validation (402, 410, 302, ...).",
)
@click.option(
    "--page-fault",
    type=click.IntRange(300, 599),
    default=None,
    help="HTTP status answered to every GET of a results page after the first.",
)
@click.option(
    "--post-fault",
    type=click.IntRange(300, 599),
    default=None,
    help="HTTP status answered to every POST, naming no item; nothing is created.",
)
@click.option(
    "--unknown-status",
    default=None,
    help="A status outside the documented ones, reported by validations until terminal.",
)
@click.option(
    "--arrival-jitter",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Up to this many seconds (seeded random) before a request counts as arrived.",
)
def mock_server(host: str, port: int, **options: Any) -> None:
    """Serve a local fake of the Amplemarket email-validation API until Ctrl-C.

    It follows the real API (202 + Location, Retry-After while queued or processing, pages
    of 100 sorted by email, PATCH cancel, _errors bodies) and can enforce limits and inject
    faults. Admin endpoints: GET /_fake/summary, GET /_fake/log, and POST /_fake/credits
    with {"add": N} to top the account up.

    Example, with the real account's limits and a few faults:

    \b
        ample-batch mock-server --port 8025 --usage-limit 15000/hour \\
            --rate-limit 500/minute --credits 20000 --fail-5xx 0.02 --drop 0.01
        ample-batch validate leads.csv --base-url http://127.0.0.1:8025 --api-key test-key
        curl -X POST -d '{"add": 2000}' http://127.0.0.1:8025/_fake/credits
    """
    options["rejects"] = frozenset(email.strip().lower() for email in options["rejects"])
    config = FakeConfig(**options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port))


async def _serve(config: FakeConfig, host: str, port: int) -> None:
    async with await start_fake(config, host, port) as fake:
        click.echo(f"Fake Amplemarket API on {fake.url} (api key: {config.api_key})")
        await asyncio.Event().wait()

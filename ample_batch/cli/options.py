"""The options the commands share, as click decorators: the file, the API, the limits, the state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..recheck import DEFAULT_RECHECK
from .params import DurationType, LimitType, RecheckType

F = TypeVar("F", bound=Callable[..., Any])


def default_state_dir() -> Path:
    from ..options import default_state_dir as platform_default  # the library's, one place

    return platform_default()


def state_dir_option(command: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="AMPLE_BATCH_HOME",
        default=default_state_dir,
        help="Job state, result cache, quota ledgers [env AMPLE_BATCH_HOME].",
    )(command)


def state_url_options(command: F) -> F:
    """Shared state in PostgreSQL: many hosts, containers and cron pods on one key."""
    for decorator in reversed(
        [
            click.option(
                "--state-url",
                envvar="AMPLE_BATCH_STATE_URL",
                metavar="URL",
                default=None,
                help="Keep jobs, cache, ledgers and locks in PostgreSQL "
                "(postgresql://user@host/db), shared by every host; nothing is written "
                "under --state-dir. Needs ample-batch[postgres] [env AMPLE_BATCH_STATE_URL].",
            ),
            click.option(
                "--state-schema",
                envvar="AMPLE_BATCH_STATE_SCHEMA",
                metavar="NAME",
                default="ample_batch",
                show_default=True,
                help="The PostgreSQL schema of --state-url's tables "
                "[env AMPLE_BATCH_STATE_SCHEMA].",
            ),
        ]
    ):
        command = decorator(command)
    return command


def file_options(command: F) -> F:
    """Options shared by every command that reads a lead list."""
    for decorator in reversed(
        [
            click.argument("input", type=click.Path(path_type=Path)),
            click.option("--email-column", metavar="NAME", help="Column holding the email."),
            click.option(
                "--encoding", metavar="NAME", help="CSV encoding (default: UTF-8, else cp1252)."
            ),
            click.option(
                "--sheet",
                metavar="NAME",
                help="XLSX sheet (default: the first; else the one sheet with an email column).",
            ),
        ]
    ):
        command = decorator(command)
    return command


def quota_options(command: F) -> F:
    """The account's limits: every command that talks to the API shares the key's ledgers."""
    for decorator in reversed(
        [
            click.option(
                "--usage-limit",
                type=LimitType(),
                default=None,
                help="Emails submitted per rolling period "
                "[default: 15000/hour; --simulate: unlimited].",
            ),
            click.option(
                "--rate-limit",
                type=LimitType(),
                default=None,
                help="Requests per rolling period, all endpoints "
                "[default: 500/minute; --simulate: unlimited].",
            ),
        ]
    ):
        command = decorator(command)
    return command


def limit_options(command: F) -> F:
    for decorator in reversed(
        [
            quota_options,
            click.option(
                "--chunk-size",
                type=int,
                help="Emails per POST [default: min(100000, usage-limit count)].",
            ),
            state_dir_option,
            click.option(
                "--cache-ttl",
                type=DurationType(),
                default="30d",
                show_default=True,
                help="Reuse verdicts younger than this (0 = never).",
            ),
            click.option(
                "--recheck",
                type=RecheckType(),
                default=str(DEFAULT_RECHECK),
                show_default=True,
                help="Buy cached verdicts of these kinds again once older than this, e.g. "
                "unknown=7d,risky=30d, on every run (a finished job's too); none = off.",
            ),
        ]
    ):
        command = decorator(command)
    return command


def api_options(command: F) -> F:
    for decorator in reversed(
        [
            click.option(
                "--api-key",
                envvar="AMPLEMARKET_API_KEY",
                show_envvar=True,
                help=(
                    "Amplemarket API key; never printed, logged or stored. Prefer the "
                    "environment variable: a key given here is visible to other users in `ps`."
                ),
            ),
            click.option(
                "--base-url",
                envvar="AMPLEMARKET_BASE_URL",
                default="https://api.amplemarket.com",
                show_default=True,
                help="API root; plain http only for loopback hosts.",
            ),
            click.option(
                "--simulate", is_flag=True, help="Use the built-in fake API: no key, no credits."
            ),
        ]
    ):
        command = decorator(command)
    return command

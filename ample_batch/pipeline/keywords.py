"""The keyword form of the Python API, named like the CLI's options and with its defaults.

    validate("leads.csv", usage_limit="15000/hour", cache_ttl="7d", progress=True)
    validate("leads.csv", recheck={"unknown": "2d", "risky": "30d"})

`run_options` turns the keywords into `ValidateOptions`: paths from `str`, limits from
`"COUNT/PERIOD"`, durations from `"30d"`; the key from AMPLEMARKET_API_KEY, the API root from
AMPLEMARKET_BASE_URL and the state dir from AMPLE_BATCH_HOME (else the platform's data dir),
as on the command line. An unknown keyword is a TypeError naming it; a bad value an InputError.
`estimate` takes the keywords that bear on a plan (`ESTIMATE_KEYWORDS`); `status` and
`cancel` find their state as `state_for` resolves it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from ..api import DEFAULT_BASE_URL
from ..errors import InputError
from ..jobs.backend import State
from ..limits import Limit, parse_duration, parse_limit
from ..options import DEFAULT_CACHE_TTL, ApiOptions, ValidateOptions, home_state_dir
from ..recheck import DEFAULT_RECHECK, RecheckPolicy, recheck_from
from .progress import LineProgress, both
from .summary import Reporter, Summary

PathLike = str | os.PathLike[str]


class _ApiKeywords(TypedDict, total=False):
    api_key: str | None
    """Bearer token; AMPLEMARKET_API_KEY when None. Never printed, logged or stored."""
    base_url: str
    """API root; AMPLEMARKET_BASE_URL, else the real API."""


class _LimitKeywords(TypedDict, total=False):
    usage_limit: str | Limit | None
    """Emails submitted per rolling period, e.g. "15000/hour" (the key's: its ledger is
    shared by every run on it)."""
    rate_limit: str | Limit | None
    """Requests per rolling period, all endpoints, e.g. "500/minute"."""


class _SharedStateKeywords(TypedDict, total=False):
    state_url: str | None
    """PostgreSQL URL for state shared by many hosts; AMPLE_BATCH_STATE_URL when None."""
    state_schema: str | None
    """The schema of `state_url`'s tables; AMPLE_BATCH_STATE_SCHEMA, else ample_batch."""


class _ReadKeywords(TypedDict, total=False):
    email_column: str | None
    """The column holding the email; detected when None."""
    encoding: str | None
    """CSV encoding; UTF-8, else cp1252, when None."""
    sheet: str | None
    """XLSX sheet; when None the first, or else the one sheet with an email column."""


class RunKeywords(_ApiKeywords, _LimitKeywords, _SharedStateKeywords, total=False):
    """The keywords of every validate function: the API, its limits, the state, the run."""

    simulate: bool
    """Use the built-in fake API: no key, no credits, made-up verdicts."""
    state_dir: PathLike
    """Job state, result cache, quota ledgers; AMPLE_BATCH_HOME, else the platform's."""
    chunk_size: int | None
    """Emails per POST."""
    cache_ttl: float | str
    """Reuse verdicts younger than this: seconds or "30d"; 0 never reuses."""
    max_runtime: float | str | None
    """Stop submitting after this long (seconds or "8h") and raise Stopped."""
    recheck: str | Mapping[str, str | float] | RecheckPolicy | None
    """Buy cached verdicts of a kind again once older than this: "unknown=7d,risky=30d", or
    {"unknown": "7d"}; "none" (or {}) turns it off; None keeps the default, unknown=7d."""
    progress: bool
    """Report progress on stderr (a notebook shows it under the cell)."""


class FileKeywords(RunKeywords, _ReadKeywords, total=False):
    """`validate`'s keywords: the run's, and how to read and write the file."""

    output: PathLike | None
    """Where the enriched list goes; <stem>.validated<ext> beside the input when None."""
    report: PathLike | None
    """Also write the run's HTML report here (a `.html` path)."""
    split: bool
    """Also write `<output stem>.<email_result><ext>` per verdict when the job completes."""
    sent_column: str | bool | None
    """Append the address as sent: True names the column `email_sent`, a str names it."""


class StatusKeywords(_SharedStateKeywords, total=False):
    """`status`'s keywords beside the state dir: the database, and which mode's jobs."""

    simulate: bool
    """The jobs of `simulate=True` runs, which keep a store of their own."""


class EstimateKeywords(StatusKeywords, _LimitKeywords, _ReadKeywords, total=False):
    """`estimate`'s keywords: what decides the plan and its pace; it makes no API call.
    `simulate=True` estimates a trial: the simulation's own cache and its unlimited quota."""

    state_dir: PathLike
    """Job state and result cache; AMPLE_BATCH_HOME, else the platform's."""
    chunk_size: int | None
    """Emails per POST."""
    cache_ttl: float | str
    """Count verdicts younger than this as cached: seconds or "30d"; 0 counts none."""
    recheck: str | Mapping[str, str | float] | RecheckPolicy | None
    """Cached verdicts of a kind counted as bought again once older than this, as validate's."""


class CancelKeywords(StatusKeywords, _ApiKeywords, _LimitKeywords, total=False):
    """`cancel`'s keywords: the state, and the API its cancels go to, with the key's limits
    (its cancels count against the request limit)."""

    state_dir: PathLike | State | None
    """The state dir; AMPLE_BATCH_HOME, else the platform's."""


RUN_KEYWORDS = frozenset(RunKeywords.__annotations__)
FILE_KEYWORDS = frozenset(FileKeywords.__annotations__)
ESTIMATE_KEYWORDS = frozenset(EstimateKeywords.__annotations__)
STATUS_KEYWORDS = frozenset(StatusKeywords.__annotations__)
CANCEL_KEYWORDS = frozenset(CancelKeywords.__annotations__)
API_KEYWORDS = frozenset({"api_key", "base_url", "simulate", "usage_limit", "rate_limit"})


def check_keywords(caller: str, keywords: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """TypeError naming the first keyword `caller` does not take, as Python's own says it."""
    for name in keywords:
        if name not in allowed:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")


def run_options(input_path: PathLike, keywords: Mapping[str, Any]) -> ValidateOptions:
    """ValidateOptions for `input_path` from already checked keywords (`progress` is not one)."""
    api = api_options(keywords)
    output = keywords.get("output")
    report = keywords.get("report")
    cache_ttl = _duration(keywords, "cache_ttl")
    return ValidateOptions(
        input=_path(input_path, "input"),
        output=None if output is None else _path(output, "output"),
        email_column=_text(keywords, "email_column"),
        encoding=_text(keywords, "encoding"),
        sheet=_text(keywords, "sheet"),
        api=api,
        chunk_size=_count(keywords, "chunk_size"),
        state_dir=_state_dir(keywords),
        cache_ttl=DEFAULT_CACHE_TTL if cache_ttl is None else cache_ttl,
        max_runtime=_duration(keywords, "max_runtime"),
        report=None if report is None else _path(report, "report"),
        recheck=_recheck(keywords),
        split=_flag(keywords, "split"),
        sent_column=sent_column_name(keywords.get("sent_column")),
        state_url=_state_url(keywords),
        state_schema=_state_schema(keywords),
    )


def api_options(keywords: Mapping[str, Any]) -> ApiOptions:
    """ApiOptions from already checked keywords, with the environment's key and API root."""
    return ApiOptions(
        api_key=_text(keywords, "api_key") or os.environ.get("AMPLEMARKET_API_KEY"),
        base_url=_text(keywords, "base_url")
        or os.environ.get("AMPLEMARKET_BASE_URL")
        or DEFAULT_BASE_URL,
        simulate=_flag(keywords, "simulate"),
        usage_limit=_limit(keywords, "usage_limit"),
        rate_limit=_limit(keywords, "rate_limit"),
    )


def state_for(keywords: Mapping[str, Any]) -> State:
    """The state `status` and `cancel` look at, as the command line finds it: `state_dir` (a
    State as it is), AMPLE_BATCH_HOME, else the platform's; `state_url`, else
    AMPLE_BATCH_STATE_URL (a checked PostgreSQL URL). The mode's twin is the caller's choice.

    >>> state_for({"state_dir": "st3"}).dir
    PosixPath('st3')
    """
    given = keywords.get("state_dir")
    if isinstance(given, State):
        if keywords.get("state_url") is not None or keywords.get("state_schema") is not None:
            raise TypeError("state_dir is a State already: give state_url and its schema in it")
        return given
    url = _state_url(keywords)
    if url is None:
        return State(_state_dir(keywords))
    from .. import pg  # here: a wrong URL is bad usage (exit 2) before anything is opened

    return State(
        _state_dir(keywords), url=pg.check_url(url), schema=pg.check_schema(_state_schema(keywords))
    )


def _state_dir(keywords: Mapping[str, Any]) -> Path:
    value = keywords.get("state_dir")
    return home_state_dir() if not value else _path(value, "state_dir")


def _state_url(keywords: Mapping[str, Any]) -> str | None:
    return _text(keywords, "state_url") or os.environ.get("AMPLE_BATCH_STATE_URL") or None


def _state_schema(keywords: Mapping[str, Any]) -> str:
    return (
        _text(keywords, "state_schema")
        or os.environ.get("AMPLE_BATCH_STATE_SCHEMA")
        or "ample_batch"
    )


def _recheck(keywords: Mapping[str, Any]) -> RecheckPolicy:
    value = keywords.get("recheck")
    return DEFAULT_RECHECK if value is None else recheck_from(value)  # InputError, as the CLI


DEFAULT_SENT_COLUMN = "email_sent"
"""`--sent-column`'s name when none is given (`sent_column=True`)."""


def sent_column_name(value: object) -> str | None:
    """The column `sent_column=` asks for: None (none), True (`email_sent`) or a name."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_SENT_COLUMN
    if isinstance(value, str):
        return value
    raise TypeError(f"sent_column must be True or a column name, not {type(value).__name__}")


def _path(value: object, name: str) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise TypeError(f"{name} must be a str or a Path, not {type(value).__name__}")


def _text(keywords: Mapping[str, Any], name: str) -> str | None:
    value = keywords.get(name)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def _flag(keywords: Mapping[str, Any], name: str) -> bool:
    value = keywords.get(name, False)
    if isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be True or False, not {type(value).__name__}")


def _count(keywords: Mapping[str, Any], name: str) -> int | None:
    value = keywords.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _limit(keywords: Mapping[str, Any], name: str) -> Limit | None:
    value = keywords.get(name)
    if value is None or isinstance(value, Limit):
        return value
    if isinstance(value, str):
        return parse_limit(value)  # InputError, as on the command line
    raise TypeError(f"{name} must be a 'COUNT/PERIOD' str or a Limit, not {type(value).__name__}")


def _duration(keywords: Mapping[str, Any], name: str) -> float | None:
    value = keywords.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise InputError(f"bad {name} {value}: must not be negative")
        return float(value)
    raise TypeError(f"{name} must be seconds or a duration like '30d', not {type(value).__name__}")


def options_for(
    caller: str,
    source: PathLike | ValidateOptions,
    keywords: Mapping[str, Any],
    allowed: frozenset[str],
) -> ValidateOptions:
    """`source` as it is, or the options for the file `source` from the keywords: TypeError
    for a keyword `caller` does not take, or for keywords beside a ValidateOptions (only
    `progress`, not an option of the run, may go with one)."""
    check_keywords(caller, keywords, allowed)
    if isinstance(source, ValidateOptions):
        others = [name for name in keywords if name != "progress"]
        if others:
            raise TypeError(
                f"{caller}() takes a ValidateOptions or keyword options, not both: "
                f"got {others[0]!r}"
            )
        return source
    return run_options(source, keywords)


@dataclass(frozen=True)
class Call:
    """One call of a validate function, its keywords resolved."""

    options: ValidateOptions
    reporter: Reporter
    """The caller's reporter and, with `progress=True`, the line reporter."""
    progress: LineProgress | None = None

    def done(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.done(summary)


def resolve(
    caller: str,
    source: PathLike | ValidateOptions,
    keywords: Mapping[str, Any],
    reporter: Reporter | None = None,
    *,
    allowed: frozenset[str] = FILE_KEYWORDS,
) -> Call:
    """The options, reporter and progress of a call: TypeError for a keyword `caller` does
    not take, InputError for a value the command line would refuse too."""
    options = options_for(caller, source, keywords, allowed)
    progress = LineProgress() if _flag(keywords, "progress") else None
    return Call(options, both(reporter, progress), progress)

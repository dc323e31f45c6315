"""What a run is given: the options of `validate`, the API's part of them (shared with
`cancel` and `estimate`), and their defaults by mode (a simulation's limits and state).

    >>> trial = ApiOptions(simulate=True)
    >>> options = ValidateOptions(input=Path("leads.csv"), state_dir=Path("/s"), api=trial)
    >>> trial.resolved_usage_limit.count >= 1_000_000, options.cache_ttl == DEFAULT_CACHE_TTL
    (True, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from .api import DEFAULT_BASE_URL
from .api.retries import RetryPolicy
from .limits import Limit
from .recheck import DEFAULT_RECHECK, RecheckPolicy

DEFAULT_CACHE_TTL = 30 * 86400.0
"""`--cache-ttl`'s default: cached verdicts are reused for this many seconds."""


def cache_cutoff(now: float, cache_ttl: float) -> float:
    """The oldest check time a verdict may have to be reused; `cache_ttl` 0 reuses none."""
    return now - cache_ttl if cache_ttl > 0 else float("inf")


SIMULATED_DIR = "simulated"
"""A simulation keeps its jobs, verdicts, ledgers and locks here, under the state dir."""


USAGE_LIMIT = Limit(15000, 3600.0)


RATE_LIMIT = Limit(500, 60.0)


# A trial has no account to protect: the built-in fake enforces these, high enough that a
# simulated job of millions of rows never waits for quota.
SIMULATED_USAGE_LIMIT = Limit(1_000_000_000, 3600.0)


SIMULATED_RATE_LIMIT = Limit(100_000, 60.0)


def default_state_dir() -> Path:
    """`--state-dir`'s default when AMPLE_BATCH_HOME is not set: the platform's data dir."""
    return Path(platformdirs.user_data_dir("ample-batch", appauthor=False))


def home_state_dir() -> Path:
    """The state dir of a Python call that names none: AMPLE_BATCH_HOME when set (and not
    empty), else the platform's data dir; the command line's `--state-dir` default too (there
    click reads the variable itself)."""
    home = os.environ.get("AMPLE_BATCH_HOME")
    return Path(home) if home else default_state_dir()


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    """How to reach the API, and the account's limits."""

    api_key: str | None = field(default=None, repr=False)
    """Bearer token; never printed, logged or stored."""
    base_url: str = DEFAULT_BASE_URL
    """API root; plain http only for loopback hosts."""
    usage_limit: Limit | None = None
    """Emails submitted per rolling window; None = 15000/hour (unlimited to simulate)."""
    rate_limit: Limit | None = None
    """Requests per rolling window, all endpoints; None = 500/minute (unlimited to simulate)."""
    simulate: bool = False
    """Use the built-in fake API on loopback: no key, no credits, a store of its own."""
    retry: RetryPolicy = RetryPolicy()
    """Retries, timeouts and polling defaults."""

    @property
    def resolved_usage_limit(self) -> Limit:
        """The usage limit in force: the one given, else the default for the mode."""
        if self.usage_limit is not None:
            return self.usage_limit
        return SIMULATED_USAGE_LIMIT if self.simulate else USAGE_LIMIT

    @property
    def resolved_rate_limit(self) -> Limit:
        """The request limit in force: the one given, else the default for the mode."""
        if self.rate_limit is not None:
            return self.rate_limit
        return SIMULATED_RATE_LIMIT if self.simulate else RATE_LIMIT


@dataclass(frozen=True, kw_only=True)
class ValidateOptions:
    """Everything `ample-batch validate` takes."""

    input: Path
    """The lead list: .csv .tsv .txt .csv.gz .parquet .xlsx."""
    output: Path | None = None
    """Where the enriched list goes; defaults to <stem>.validated<ext> beside the input."""
    email_column: str | None = None
    """The column holding the email; detected when None."""
    encoding: str | None = None
    """CSV text encoding; UTF-8 with a cp1252 fallback when None."""
    sheet: str | None = None
    """XLSX sheet name; when None the first, or else the one sheet with an email column."""
    api: ApiOptions = ApiOptions()
    """The API and its limits."""
    chunk_size: int | None = None
    """Emails per POST; min(100000, usage-limit count) when None."""
    state_dir: Path = field(default_factory=home_state_dir)
    """Job state, result cache and quota ledgers; AMPLE_BATCH_HOME, else the platform's data
    dir, as on the command line."""
    state_url: str | None = field(default=None, repr=False)
    """A PostgreSQL URL: the state lives in that database, shared by every host, and nothing
    is written under `state_dir`. Kept out of the repr: it may hold a password."""
    state_schema: str = "ample_batch"
    """The PostgreSQL schema of `state_url`'s tables."""
    cache_ttl: float = DEFAULT_CACHE_TTL
    """Reuse verdicts younger than this many seconds; 0 never reuses."""
    max_runtime: float | None = None
    """Stop submitting after this many seconds and exit 75."""
    report: Path | None = None
    """Write the job's HTML report here as the run ends (complete or not); None writes none."""
    recheck: RecheckPolicy = DEFAULT_RECHECK
    """Verdict kinds bought again once older than their rule's duration (`unknown=7d`)."""
    split: bool = False
    """Also write one file per `email_result` value beside the output when the job completes."""
    sent_column: str | None = None
    """Append a column of this name with the address as sent to the API; None appends none."""
    side_files: tuple[tuple[str, Path], ...] = ()
    """Files the caller writes itself as the run ends, by the option naming them (the CLI's
    `("--summary-json", path)`): the run refuses to start, as it does for its own, when one
    would overwrite the input, a file of the run or the state. The library never writes them."""

    def __post_init__(self) -> None:
        # `ValidateOptions(input="leads.csv")` is what a script writes: its paths as Paths.
        for name in ("input", "output", "state_dir", "report"):
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike) and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

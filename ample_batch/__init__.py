"""ample-batch: validate the emails in large lead lists through the Amplemarket API.

    from ample_batch import estimate, status, validate

    print(estimate("leads.csv").credits_needed)         # no API call
    summary = validate("leads.csv", simulate=True)      # or one ValidateOptions
    print(summary.output, summary.verdicts, status(simulate=True))

Everything the command line does is a function here, with its options as keywords and its
defaults; the CLI only parses options and maps these exceptions to exit codes.
"""

import importlib
import os
from typing import Any

# polars' allocator (its own jemalloc, configured once, when polars loads) keeps freed pages
# for a while; every stage frees what the one before built, so kept pages raised the peak with
# no live data behind them. A short decay trades a little time for that memory (figures:
# docs/design-measurements.md). A value already in the environment wins, and once polars is
# loaded this changes nothing.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")

from .errors import (
    AmpleBatchError,
    ApiError,
    InputError,
    InsufficientCredits,
    JobBusy,
    RetryableError,
    RetryInterrupted,
    Stopped,
    SubmissionUnknown,
    TerminalError,
    Unauthorized,
)
from .limits import Limit, parse_duration, parse_limit
from .recheck import RecheckPolicy, parse_recheck

# Imported on first use: they pull in pyarrow, polars and aiohttp, which the CLI's quick
# commands (`--help`, `status`) should not pay for.
_LAZY = {
    "ApiOptions": "options",
    "Estimate": "pipeline.estimate",
    "JobStatus": "pipeline.jobs",
    "RetryPolicy": "api.retries",
    "Summary": "pipeline.summary",
    "ValidateOptions": "options",
    "ValidationClient": "api.client",
    "avalidate": "pipeline.validate",
    "avalidate_emails": "pipeline.frames",
    "avalidate_frame": "pipeline.frames",
    "cancel": "pipeline.jobs",
    "estimate": "pipeline.estimate",
    "new_session": "api.transport",
    "status": "pipeline.jobs",
    "validate": "pipeline.validate",
    "validate_emails": "pipeline.frames",
    "validate_frame": "pipeline.frames",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AmpleBatchError",
    "ApiError",
    "ApiOptions",
    "Estimate",
    "InputError",
    "InsufficientCredits",
    "JobBusy",
    "JobStatus",
    "Limit",
    "RecheckPolicy",
    "RetryInterrupted",
    "RetryPolicy",
    "RetryableError",
    "Stopped",
    "SubmissionUnknown",
    "Summary",
    "TerminalError",
    "Unauthorized",
    "ValidateOptions",
    "ValidationClient",
    "avalidate",
    "avalidate_emails",
    "avalidate_frame",
    "cancel",
    "estimate",
    "new_session",
    "parse_duration",
    "parse_limit",
    "parse_recheck",
    "status",
    "validate",
    "validate_emails",
    "validate_frame",
]

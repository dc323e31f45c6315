"""ample-batch: validate the emails in large lead lists through the Amplemarket API.

    from pathlib import Path
    from ample_batch import ValidateOptions, ApiOptions, validate

    summary = validate(ValidateOptions(input=Path("leads.csv"), state_dir=Path("state"),
                                       api=ApiOptions(simulate=True)))
    print(summary.output, summary.verdicts)

Everything the command line does is a function here; the CLI only parses options and maps
these exceptions to exit codes.
"""

from .client import RetryPolicy, ValidationClient, new_session
from .errors import (
    AmpleBatchError,
    ApiError,
    InputError,
    InsufficientCredits,
    JobBusy,
    RetryableError,
    Stopped,
    SubmissionUnknown,
    TerminalError,
    Unauthorized,
)
from .limits import Limit, parse_duration, parse_limit
from .manage import Estimate, EstimateOptions, JobStatus, cancel, estimate, status
from .run import ApiOptions, Summary, ValidateOptions, validate

__all__ = [
    "AmpleBatchError",
    "ApiError",
    "ApiOptions",
    "Estimate",
    "EstimateOptions",
    "InputError",
    "InsufficientCredits",
    "JobBusy",
    "JobStatus",
    "Limit",
    "RetryPolicy",
    "RetryableError",
    "Stopped",
    "SubmissionUnknown",
    "Summary",
    "TerminalError",
    "Unauthorized",
    "ValidateOptions",
    "ValidationClient",
    "cancel",
    "estimate",
    "new_session",
    "parse_duration",
    "parse_limit",
    "status",
    "validate",
]

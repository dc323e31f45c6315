"""Every error ample-batch raises, in one tree.

    AmpleBatchError
    ├── InputError              bad usage or bad input; nothing spent          (exit 2)
    │   ├── PathRefused         a file the run would write is refused (.path)   (exit 2)
    │   └── StateUnusable       the state dir or database needs the user        (exit 2)
    ├── JobBusy                 another run holds this job's lock               (exit 75)
    ├── StateFailed             the state database failed unnamed; report it    (exit 1)
    ├── Stopped                 deadline or interrupt; run again to resume      (exit 75)
    │   ├── StateUnavailable    the state is locked or its disk full            (exit 75)
    │   ├── JobLockLost         another run took this run's job lock            (exit 75)
    │   └── OutputUnwritten     the output failed after the work was done       (exit 75)
    └── ApiError                anything the Amplemarket API said or did
        ├── RetryableError      waiting and trying again may work
        │   ├── RateLimited     429: too many requests          (.retry_after)
        │   ├── UsageLimited    429: too many emails this window (.retry_after)
        │   │   └── SubmissionRefused  any other 429 to a POST: that batch was refused
        │   ├── TransientError  5xx, timeout, connection lost before the answer
        │   └── RetryInterrupted  a stop request ended a wait before a request went out
        ├── SubmissionUnknown   a POST may or may not have created a batch
        └── TerminalError       trying again will not help
            ├── Unauthorized          the key was rejected                    (exit 3)
            ├── InsufficientCredits   the account is out of email credits     (exit 4)
            ├── BadRequest            the API refused the request as invalid
            ├── NotFound              the validation id is unknown to the API
            ├── ValidationFailed      a validation ended with status "error"
            └── UnsafeLink            a link to another origin, or a paging loop

Retry decisions are made by type (`isinstance(exc, RetryableError)`), never by message text.
`Stopped` and `InsufficientCredits` always have `.summary` (None when none could be made).
With `-q` a `Stopped` whose `planned` is true exits 75 silently; the state and output
failures under it are not planned, so cron still mails about them.
Every message says what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only: errors.py is imported by every stage, the summary by none
    from .pipeline.summary import Summary

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNAUTHORIZED, EXIT_CREDITS, EXIT_TEMPFAIL = 0, 1, 2, 3, 4, 75
EXIT_CODES = {
    EXIT_OK: "done; the output is written",
    EXIT_ERROR: "unexpected error",
    EXIT_USAGE: "bad usage or bad input, or a state dir you must fix",
    EXIT_UNAUTHORIZED: "the API key was rejected",
    EXIT_CREDITS: "out of credits",
    EXIT_TEMPFAIL: "stopped before done",
}
"""The exit codes of the contract (design.md); the README's table is checked against it."""


class AmpleBatchError(Exception):
    """Base class of every error ample-batch raises on purpose."""

    exit_code = EXIT_ERROR
    """What the command line exits with when this error ends a command."""

    def one_line(self) -> str:
        """The message the command line prints for it, on one line."""
        return str(self)


class InputError(AmpleBatchError):
    """Bad usage or bad input, detected before any credit is spent."""

    exit_code = EXIT_USAGE


class JobBusy(AmpleBatchError):
    """Another process is running the same job right now."""

    exit_code = EXIT_TEMPFAIL


class Stopped(AmpleBatchError):
    """The run stopped early (deadline, interrupt, limits); running it again resumes it."""

    exit_code = EXIT_TEMPFAIL
    planned = True
    """A stop cron expects every night (`-q` keeps it silent), not a condition to mail about."""
    summary: Summary | None = None
    """How far the run got, its partial output written; None when it stopped before a
    summary could be made (before the engine started, or with the state or output
    unwritable). Always there, so `except Stopped as e: e.summary` never fails."""


class ApiError(AmpleBatchError):
    """The Amplemarket API answered with an error, or could not be reached.

    `status` is the HTTP status (None when there was no response) and `errors` the body's
    `_errors` list, kept as the API sent it.
    """

    exit_code = EXIT_TEMPFAIL

    def one_line(self) -> str:
        return f"{self}; run the same command again to resume"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = list(errors)

    @property
    def codes(self) -> list[str]:
        """The `_errors[].code` values, in order."""
        return [str(e.get("code")) for e in self.errors if e.get("code")]


class RetryableError(ApiError):
    """Waiting and trying again may succeed. `retry_after` is the server's hint, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: Sequence[dict[str, Any]] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, errors=errors)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429: the request-rate limit was exceeded; every request should pause."""


class UsageLimited(RetryableError):
    """429 `usage_limit_exceeded`: too many emails submitted in the usage window."""


class SubmissionRefused(UsageLimited):
    """A 429 to a POST whose code is not `usage_limit_exceeded` (the API does not document
    the code of a usage refusal): the batch was refused, so it goes back to the plan and the
    scheduler waits before submitting again, as for UsageLimited. The client never resends it
    itself."""


class TransientError(RetryableError):
    """A 5xx, a timeout or a dropped connection."""


class RetryInterrupted(RetryableError):
    """A stop request cut short the wait before a retry (or before a request slot came free).

    Nothing was in flight, so running again later is safe: no batch was created or charged
    by the request that did not go out. The error that led to the wait, if any, is the cause.
    """


class SubmissionUnknown(ApiError):
    """A POST was sent but its answer was lost: the batch may exist and may be charged.

    The caller decides whether to resubmit, and counts it as a possible double charge.
    """


class TerminalError(ApiError):
    """Trying again will not help."""

    exit_code = EXIT_ERROR

    def one_line(self) -> str:
        return f"the API refused: {self}"


class Unauthorized(TerminalError):
    """The API key was rejected (401/403)."""

    exit_code = EXIT_UNAUTHORIZED

    def one_line(self) -> str:
        return str(self)


class InsufficientCredits(TerminalError):
    """The account ran out of email credits."""

    exit_code = EXIT_CREDITS
    summary: Summary | None = None
    """What the run did before the credits ran out, its partial output written; None when
    no summary could be made (a 402 before the engine started)."""

    def one_line(self) -> str:
        return str(self)


class BadRequest(TerminalError):
    """The API refused the request as invalid (400 and other 4xx)."""


class NotFound(TerminalError):
    """The API does not know this validation id (404)."""


class ValidationFailed(TerminalError):
    """A validation ended with status `error`; `errors` holds its `_errors`."""


class UnsafeLink(TerminalError):
    """A link pointed to another origin, or paging repeated itself."""


class PathRefused(InputError):
    """A file the run would write is refused before any work: it cannot be written, or would
    overwrite the input, another file of the run or the state. `path` is that file as given,
    so the CLI knows not to write its --summary-json there on the way out."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class StateUnusable(InputError):
    """The state dir or its database cannot be used as it is (read-only, corrupt, newer, or
    missing while the key's ledger shows past spend): the user must act. Found at the start,
    nothing is spent; found mid-run (a disk remounted read-only), the run stops there."""


class StateUnavailable(Stopped):
    """The state database cannot be written right now (locked, disk full): run again later."""

    planned = False


class JobLockLost(Stopped):
    """This run's job lock was lost with its database connection, and another run took the
    job: it submits nothing more for it (that run owns the job now)."""

    planned = False


class StateFailed(AmpleBatchError):
    """The state database failed in a way we cannot name (a defect, most likely): exit 1,
    naming the file, never "nothing was spent" (credits may have been)."""


class OutputUnwritten(Stopped):
    """The output could not be written after the work was done: the verdicts are safe in the
    state, and running the same command again rewrites it without spending."""

    planned = False

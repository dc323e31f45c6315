"""How a command ends: whatever ended it (our errors, click's, an interrupt, a defect) as one
exit code and one line, the mapping every command leaves through.

    >>> from ample_batch.errors import InputError
    >>> outcome(InputError("leads.csv: the file is empty; export the leads again"))
    (2, 'leads.csv: the file is empty; export the leads again')
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..errors import EXIT_ERROR, EXIT_OK, EXIT_TEMPFAIL, AmpleBatchError, JobBusy, Stopped


def outcome(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for whatever ends a command: the one mapping."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return EXIT_OK, exc.format_message()  # the help, asked for by giving no arguments
    if isinstance(exc, click.ClickException):
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see {exc.ctx.command_path} --help)"
        return exc.exit_code, exc.format_message() + hint
    if isinstance(exc, AmpleBatchError):
        return exc.exit_code, exc.one_line()
    if isinstance(exc, KeyboardInterrupt | click.Abort):
        return EXIT_TEMPFAIL, "interrupted; run the same command again to resume"
    # A defect or an environment problem we did not foresee: one line, not a traceback.
    # The job's state is consistent (every transition is one transaction).
    return EXIT_ERROR, f"unexpected error: {type(exc).__name__}: {exc} (please report it)"


def exit_for(exc: BaseException, *, quiet: bool = False) -> NoReturn:
    """Leave with `exc`'s exit code, saying why in one line on stderr.

    With `quiet`, a run that stopped as planned (deadline, interrupt, another run busy) exits
    75 silently: cron mails whatever a job prints, and "not done yet" is every night's news.
    """
    code, message = outcome(exc)
    planned = isinstance(exc, JobBusy | KeyboardInterrupt | click.Abort) or (
        isinstance(exc, Stopped) and exc.planned
    )
    if code == EXIT_OK:
        click.echo(message)
    elif not (quiet and planned):
        click.echo(f"ample-batch: {message}", err=True)
    sys.exit(code)

"""The checks `validate` and `estimate` both make before any network call or full scan.

spec, output, chunk, state_dir = prepare(options)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..files.inspect import inspect_input
from ..files.join import check_sent_column
from ..files.output import check_output, default_output_path
from ..files.spec import InputSpec
from ..files.split import check_split_paths
from ..jobs.plan import chunk_size_for
from ..options import ValidateOptions, state_dir_for
from .html_report import check_report_path


class Prepared(NamedTuple):
    """What a command knows about a run once its options have passed the checks."""

    spec: InputSpec
    """The input as its head reads: format, dialect, encoding, email column."""
    output: Path
    """Where the enriched list goes: the option, else `<stem>.validated<ext>` beside the input."""
    chunk: int
    """Emails per POST."""
    state_dir: Path
    """Where this mode's state lives (`state_dir_for`: a simulation has its own)."""


def prepare(options: ValidateOptions, *, writes: bool = True) -> Prepared:
    """Inspect the input, size the chunks and find the state; with `writes`, also refuse an
    output that cannot be written or would destroy the input. Raises InputError."""
    spec = inspect_input(
        options.input,
        email_column=options.email_column,
        encoding=options.encoding,
        sheet=options.sheet,
    )
    output = options.output or default_output_path(options.input)
    if writes:
        check_output(spec, output)
        check_sent_column(spec, options.sent_column)
        if options.split:
            check_split_paths(spec, output)
        if options.report is not None:
            check_report_path(options.report)
    chunk = chunk_size_for(options.chunk_size, options.api.resolved_usage_limit)
    return Prepared(spec, output, chunk, state_dir_for(options.api, options.state_dir))

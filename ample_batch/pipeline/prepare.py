"""The checks `validate` and `estimate` both make before any network call or full scan.

spec, output, chunk, state = prepare(options)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..files.appended import check_sent_column
from ..files.inspect import inspect_input
from ..files.output import check_output, default_output_path
from ..files.spec import InputSpec
from ..files.split import check_split_paths
from ..jobs.backend import State
from ..jobs.plan import chunk_size_for
from ..options import ApiOptions, ValidateOptions
from .html_report import check_report_path


class Prepared(NamedTuple):
    """What a command knows about a run once its options have passed the checks."""

    spec: InputSpec
    """The input as its head reads: format, dialect, encoding, email column."""
    output: Path
    """Where the enriched list goes: the option, else `<stem>.validated<ext>` beside the input."""
    chunk: int
    """Emails per POST."""
    state: State
    """Where this mode's state lives (`state_of`: a simulation has its own)."""


def prepare(options: ValidateOptions, *, writes: bool = True) -> Prepared:
    """Inspect the input, size the chunks and find the state; with `writes`, also refuse an
    output that cannot be written or would destroy the input. Raises InputError."""
    spec = inspect_input(
        options.input,
        email_column=options.email_column,
        encoding=options.encoding,
        sheet=options.sheet,
    )
    output = options.output or default_output_path(options.input, spec.identity_sheet)
    if writes:
        check_output(spec, output)
        check_sent_column(spec, options.sent_column)
        if options.split:
            check_split_paths(spec, output)
        if options.report is not None:
            check_report_path(options.report)
    chunk = chunk_size_for(options.chunk_size, options.api.resolved_usage_limit)
    state = state_of(options.api, options.state_dir, options.state_url, options.state_schema)
    return Prepared(spec, output, chunk, state)


def state_of(
    api: ApiOptions, state_dir: Path, url: str | None = None, schema: str = "ample_batch"
) -> State:
    """Where a run keeps its state: the state dir, or the database at `url`; a simulation
    gets a store of its own in either (a subdir, or a schema), so its made-up verdicts never
    reach a real job or the real verdict cache, nor touch a real job's ledgers or locks.

    >>> state_of(ApiOptions(simulate=True), Path("/s")).dir
    PosixPath('/s/simulated')
    """
    if url is not None:
        # A wrong URL or schema name is bad usage (exit 2) before anything is read.
        from .. import pg

        url, schema = pg.check_url(url), pg.check_schema(schema)
    state = State(state_dir, url=url, schema=schema)
    return state.for_mode(api.simulate)

"""The checks `validate` and `estimate` both make before any network call or full scan.

spec, output, chunk, state = prepare(options)

Every file a run writes is listed once, by `run_writes`, and checked once, by
`writable.check_distinct`: none may be the input, another of them, or the state's.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..files.appended import check_sent_column
from ..files.inspect import inspect_input
from ..files.output import check_output, default_output_path, partial_path
from ..files.spec import InputSpec
from ..files.split import SPLIT_VALUES, check_split_paths, split_path
from ..jobs.backend import State
from ..jobs.plan import chunk_size_for
from ..options import ApiOptions, ValidateOptions
from .html_report import check_report_name
from .writable import Written, check_distinct, check_writable


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
    """Inspect the input, size the chunks and find the state; with `writes`, also refuse a
    file the run would write (`run_writes`) that cannot be written or would destroy the
    input, another of them or the state. Raises InputError."""
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
            check_report_name(options.report)
        written = run_writes(options, output)
        check_distinct(written, input=spec.path, state_dir=state_dir_of(options))
        # Last: a file in the state dir is better told so than "no directory" (not made yet).
        report = () if options.report is None else (("--report", options.report),)
        for option, path in (*report, *options.side_files):
            check_writable(option, path)
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


def run_writes(options: ValidateOptions, output: Path) -> list[Written]:
    """Every file a run of `options` may write with `output` as its output, the run's own
    first and the caller's `side_files` last (in a clash the later file is the one refused).

    >>> [str(w.path) for w in run_writes(ValidateOptions(input=Path("a.csv"), state_dir=Path("s"),
    ...     side_files=(("--summary-json", Path("s.json")),)), Path("a.validated.csv"))]
    ['a.validated.csv', 'a.validated.partial.csv', 's.json']
    """
    named = "-o" if options.output is not None else "the output"
    written = [
        Written(output, named, "-o"),
        Written(partial_path(output), "the partial output", "-o"),
    ]
    if options.split:
        for value in SPLIT_VALUES:
            written.append(Written(split_path(output, value), f"--split's {value} file", "-o"))
    if options.report is not None:
        written.append(Written(options.report, "--report"))
    written += [Written(path, option) for option, path in options.side_files]
    return written


def check_side_files(options: ValidateOptions) -> None:
    """Refuse, before even the input is read, a side file (`options.side_files`) that cannot
    be written, or would overwrite the input, the output, another file of the run or the
    state. The CLI calls it first: only a path that passed may take --summary-json on any
    exit. The output is the one given, else the default without a sheet (`prepare` checks
    again once the input has named it). Raises PathRefused."""
    if not options.side_files:
        return
    output = options.output or default_output_path(options.input)
    written = run_writes(options, output)
    first = len(written) - len(options.side_files)
    check_distinct(written, input=options.input, state_dir=state_dir_of(options), first=first)
    for option, path in options.side_files:
        check_writable(option, path)


def state_dir_of(options: ValidateOptions) -> Path | None:
    """The dir the state lives in, where no file of a run may go; None with a `state_url`,
    whose runs write nothing under `state_dir`."""
    return options.state_dir if options.state_url is None else None

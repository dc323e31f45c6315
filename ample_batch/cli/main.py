"""The `ample-batch` command line: parse options, call the library, leave through `outcome`.

Exit codes (a contract, see README): 0 done · 1 unexpected error · 2 bad usage or input ·
3 API key rejected · 4 out of credits · 75 stopped early, run again to resume.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from ..errors import (
    EXIT_OK,
    InputError,
)
from .options import (
    api_options,
    file_options,
    limit_options,
    quota_options,
    state_dir_option,
    state_url_options,
)
from .outcome import exit_for, outcome
from .params import TYPED, ColumnNameType, DurationType, TypedSpellings


def _mute_retry_logs() -> None:
    # stamina logs each retry; without a handler Python would print them bare to stderr.
    logging.getLogger("stamina").addHandler(logging.NullHandler())
    logging.getLogger("stamina").propagate = False


LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "mock-server": (
        "ample_batch.fake.command",
        "mock_server",
        "Serve a local fake of the Amplemarket email-validation API until Ctrl-C.",
    ),
}
"""Commands imported only when run or asked for help: the fake API loads aiohttp."""


class OneLineErrors(click.Group):
    """Click's usage errors as one line (`ample-batch: ...`, exit 2), like every other error,
    so cron mail and scripts see the same shape whatever went wrong; the commands of
    `LAZY_COMMANDS` load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, with the lazy commands' help from the table, not an import."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS:
                help_text = LAZY_COMMANDS[name][2]
                rows.append((name, click.Command(name, help=help_text).get_short_help_str(limit)))
                continue
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with every error that ends a command leaving through `exit_for`."""
        run = functools.partial(super().main, args, prog_name, complete_var, **extra)
        if not standalone_mode:
            return run(standalone_mode=False)
        try:
            result: Any = run(standalone_mode=False)
        except (Exception, KeyboardInterrupt) as exc:
            exit_for(exc)
        # --help and --version end in click's Exit, which non-standalone mode returns as a code.
        sys.exit(result if isinstance(result, int) else EXIT_OK)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
# prog_name: `python -m ample_batch --version` would otherwise say "main" or the module path.
@click.version_option(package_name="ample-batch", prog_name="ample-batch")
def main() -> None:
    """Validate the emails in large lead lists through the Amplemarket API.

    \b
    Example:
      ample-batch estimate leads.csv
      AMPLEMARKET_API_KEY=... ample-batch validate leads.csv
      ample-batch validate leads.csv --simulate      # no key, no credits
    """


@main.command()
@file_options
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Output file; format from extension."
)
@click.option(
    "--split",
    is_flag=True,
    help="Also write <output stem>.<email_result><ext> per verdict when the job completes.",
)
@click.option(
    "--sent-column",
    is_flag=False,
    flag_value="email_sent",
    default=None,
    type=ColumnNameType(),
    metavar="[NAME]",
    help="Append the address as sent to the API (normalised) in column NAME "
    "[default name: email_sent]; give it after INPUT, or as --sent-column=NAME.",
)
@api_options
@limit_options
@state_url_options
@click.option("--max-runtime", type=DurationType(), help="Stop and exit 75 after this long.")
@click.option("--summary-json", type=click.Path(path_type=Path), help="Write the summary as JSON.")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    metavar="PATH.html",
    help="Write the job's HTML report as the run ends (also when it stops early).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("-v", "--verbose", is_flag=True, help="More detail.")
def validate(**kw: Any) -> None:
    """Validate every email in INPUT and write it back enriched (resumes by itself).

    Adds `email_result` and `email_catch_all` to every row, keeping all columns and the row
    order. Exits 75 when it stops early: run the same command again to continue.

    \b
    Example:
      AMPLEMARKET_API_KEY=... ample-batch validate leads.csv -o leads.checked.csv
      ample-batch validate leads.csv --simulate --max-runtime 8h
    """
    from ..errors import PathRefused
    from ..pipeline.prepare import check_side_files
    from ..pipeline.stopping import exit_on_second_signal
    from ..pipeline.validate import run_validate
    from .report import Report, summary_record, utc_now, write_summary_json

    started = utc_now()
    summary_json: Path | None = kw["summary_json"]
    side_files = () if summary_json is None else (("--summary-json", summary_json),)
    options = _validate_options(kw, side_files=side_files)
    # Before anything is read: a summary must never replace the input, output or state.
    check_side_files(options)
    report = Report(quiet=kw["quiet"], verbose=kw["verbose"])
    if not kw["verbose"]:
        _mute_retry_logs()

    def record(summary: Any, code: int, error: str | None, exc: Any = None) -> None:
        # Written on every exit; failing to write it warns and never changes the exit code.
        if summary_json is None:
            return
        if isinstance(exc, PathRefused) and exc.path == summary_json:
            return  # refused once the input named the output: it is not the summary's file
        data = summary_record(
            summary, exit_code=code, error=error, started_at=started, options=options
        )
        problem = write_summary_json(summary_json, data)
        if problem is not None:
            click.echo(f"ample-batch: warning: {problem}", err=True)

    try:
        with exit_on_second_signal():
            summary = run_validate(options, reporter=report.live)
    except (Exception, KeyboardInterrupt) as exc:
        report.close()
        partial = getattr(exc, "summary", None)
        if partial is not None:
            report.summary(partial)
        record(partial, *outcome(exc), exc)
        exit_for(exc, quiet=kw["quiet"])
    report.close()
    report.summary(summary)
    record(summary, EXIT_OK, None)


def _api_options(kw: dict[str, Any]) -> Any:
    """The API options from the parsed command line (absent options keep defaults)."""
    from ..options import ApiOptions

    fields = ("api_key", "base_url", "usage_limit", "rate_limit", "simulate")
    source = click.get_current_context().get_parameter_source("base_url")
    if kw.get("simulate") and source is click.core.ParameterSource.COMMANDLINE:
        # Ignoring it would let a user believe the trial ran against the URL they gave.
        raise click.UsageError("--simulate uses the built-in fake API: leave --base-url out")
    return ApiOptions(**{name: kw[name] for name in fields if name in kw})


def _validate_options(kw: dict[str, Any], **extra: Any) -> Any:
    """The library's options from the command line and `extra` (absent ones keep defaults)."""
    from ..options import ValidateOptions

    job_fields = (
        "input", "output", "email_column", "encoding", "sheet", "chunk_size", "state_dir",
        "cache_ttl", "max_runtime", "report", "recheck",
        "state_url", "state_schema",
    )  # fmt: skip
    output_fields = ("split", "sent_column")  # validate's --split and --sent-column
    return ValidateOptions(
        api=_api_options(kw),
        **{name: kw[name] for name in (*job_fields, *output_fields) if name in kw},
        **extra,
    )


@main.command()
@file_options
@limit_options
@state_url_options
@click.option(
    "--simulate", is_flag=True, help="Estimate a --simulate run: its own cache, no quota."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def estimate(**kw: Any) -> None:
    """Pre-flight: rows, unique emails, cache hits, credits and earliest finish. No API call.

    \b
    Example:
      ample-batch estimate leads.csv --usage-limit 15000/hour
      ample-batch estimate leads.csv --simulate
    """
    from ..pipeline.estimate import run_estimate
    from .report import print_estimate

    options = _validate_options(kw)
    result = run_estimate(options)
    if kw["as_json"]:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_estimate(result)


@main.command()
@click.argument("job", required=False)
@state_dir_option
@state_url_options
@click.option("--simulate", is_flag=True, help="The jobs of --simulate runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(
    job: str | None,
    state_dir: Path,
    as_json: bool,
    state_url: str | None,
    state_schema: str,
    simulate: bool,
) -> None:
    """List the jobs in the state dir with their progress (or one JOB by id prefix).

    A job's state is new, running, stopped, partial, canceled or done (the README says what
    each means); its emails are done + failed + pending.

    \b
    Example:
      ample-batch status
      ample-batch status 3f9a
      ample-batch status --simulate
    """
    from ..pipeline.jobs import job_statuses, simulated_jobs, state_location
    from .report import print_status, simulated_hint

    state = state_location(state_dir, state_url or None, state_schema)
    read = state.for_mode(simulate)
    try:
        jobs = job_statuses(read, job)
    except InputError as exc:  # no such JOB: it may be a trial's
        hint = "" if simulate else simulated_hint(simulated_jobs(state))
        if not hint:
            raise
        raise InputError(f"{exc}{hint}") from exc
    if as_json:
        click.echo(json.dumps([j.as_dict() for j in jobs], indent=2))
        return
    # A trial's jobs live in a store of their own: say so where the real one has none.
    trials = 0 if jobs or simulate else simulated_jobs(state)
    print_status(jobs, read.where() if read.shared else read.dir, simulated=trials)


@main.command()
@click.argument("job")
@api_options
@quota_options
@state_dir_option
@state_url_options
def cancel(job: str, state_dir: Path, **kw: Any) -> None:
    """PATCH JOB's running validations to canceled, keeping their partial results.

    Running `validate` on the same file later submits what was canceled. Give the same
    --usage-limit and --rate-limit as `validate`: the key's ledgers are shared.

    \b
    Example:
      ample-batch cancel 3f9a
      ample-batch cancel 3f9a --rate-limit 60/5s
    """
    from ..pipeline.jobs import cancel_job, state_location

    _mute_retry_logs()
    state = kw["state_url"] and state_location(state_dir, kw["state_url"], kw["state_schema"])
    count = cancel_job(state or state_dir, job, _api_options(kw))
    click.echo(f"canceled {count} running validation(s); partial results kept")


@main.command("report", cls=TypedSpellings)
@click.argument("job", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    metavar="PATH.html",
    help="The HTML file to write.",
)
@state_dir_option
@state_url_options
@click.option("--simulate", is_flag=True, help="A job of a --simulate run.")
def report_command(
    job: str | None,
    output: Path,
    state_dir: Path,
    simulate: bool,
    state_url: str | None,
    state_schema: str,
) -> None:
    """Write JOB's report (by id prefix; default: the most recent job) as one HTML file.

    Verdicts, where the credits went, the domains with the most undeliverable and catch-all
    addresses, and emails submitted per hour against the usage limit. Self-contained (no
    network, no scripts): open it in a browser or mail it.

    \b
    Example:
      ample-batch report -o leads.report.html
      ample-batch report 3f9a -o leads.report.html
      ample-batch report -o leads.report.html --state-url postgresql://ample@db/leads
    """
    from ..pipeline.html_report import report as write_report
    from ..pipeline.jobs import state_location

    state = state_url and state_location(state_dir, state_url, state_schema)
    typed = click.get_current_context().meta.get(TYPED, {}).get("output", "-o")
    job_id = write_report(state or state_dir, output, job, simulate=simulate, option=typed)
    click.echo(f"wrote the report of job {job_id} to {output}")


def entry() -> NoReturn:
    """The console script: run the command, then leave with `os._exit`.

    pyarrow's and polars' native thread pools can race each other during interpreter shutdown
    and abort the process ("terminate called without an active exception", exit -6) after the
    work is done (pola-rs/polars#24169, apache/arrow#34314). Every file and database is closed
    by then, so skipping the shutdown keeps the documented exit code.
    """
    try:
        main()
        code = EXIT_OK
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

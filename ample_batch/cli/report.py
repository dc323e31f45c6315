"""What the user sees: a live progress bar on a terminal, a log line every 30 s otherwise
(cron), and the end-of-run summary. Everything goes to stderr except tables asked for."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..options import SIMULATED_USAGE_LIMIT
from ..pipeline.progress import line

if TYPE_CHECKING:
    from ..options import ValidateOptions
    from ..pipeline.estimate import Estimate
    from ..pipeline.jobs import JobStatus
    from ..pipeline.summary import LiveStatus, Summary

LOG_EVERY = 30.0


class Report:
    """Progress and summary output for one validate run."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.console = _stderr_console()
        # A dumb terminal (TERM=dumb: an editor's shell) cannot redraw a bar: log lines there.
        self._tty = self.console.is_terminal and not self.console.is_dumb_terminal and not quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._last_log = 0.0
        self._last_stage = ""
        self._wait_logged: int | None = None

    def live(self, status: LiveStatus) -> None:
        """Called often during a run; draws or logs at its own pace."""
        if self.quiet:
            return
        wait = _quota_wait(status)
        waiting = "" if wait is None else f"waiting for quota: next batch at {_clock_in(wait)}"
        # A new stage, and each wait for the usage window, is worth a line of its own: a cron
        # log then says when the next batch goes, once per batch.
        submitted = status.counters.emails_submitted if status.counters else 0
        changed = status.stage != self._last_stage
        if waiting and self._wait_logged != submitted:
            changed, self._wait_logged = True, submitted
        self._last_stage = status.stage
        if changed and (not self._tty or self.verbose):
            self._log(line(status, waiting=waiting, quota=_quota(status)))
        if self._tty:
            self._draw(status, waiting)
        elif time.monotonic() - self._last_log >= LOG_EVERY:
            self._log(line(status, waiting=waiting, quota=_quota(status)))

    def _log(self, line: str) -> None:
        self._last_log = time.monotonic()
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.console.print(f"{stamp} {line}", highlight=False, soft_wrap=True)

    def _draw(self, s: LiveStatus, waiting: str) -> None:
        total = max(s.to_submit, 1)
        if self._bar is None:
            # Every figure is formatted here, not in the columns' templates: rich renders a
            # task the moment it is added, before this run knows its totals.
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[extra]}"),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task(s.stage, total=total, counts="", extra="")
            self._bar.start()
        done = s.counters.emails_resolved if s.counters else 0
        extra = [waiting, _quota(s)]
        if s.usage_limit is not None and s.to_submit and s.counters:
            left = s.to_submit - s.counters.emails_submitted
            windows = max(0, -(-left // s.usage_limit.count) - 1)
            if windows:
                extra.append(f"ETA ≥ {windows * s.usage_limit.period / 3600:.1f} h")
        self._bar.update(
            self._task,
            description=s.stage,
            completed=done,
            total=total,
            counts=f"{done:,}/{s.to_submit:,} emails",
            extra=" · ".join(part for part in extra if part),
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def summary(self, summary: Summary) -> None:
        if self.quiet:
            return
        table = Table(title="ample-batch summary", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        rows: list[tuple[str, str]] = [
            ("job", summary.job),
            ("email column", summary.email_column),
            ("rows", f"{summary.rows:,}"),
            ("unique emails", f"{summary.unique_emails:,}"),
            ("cached", f"{summary.cached:,}"),
            ("invalid syntax", f"{summary.invalid:,}"),
        ]
        # Those the API refused, sent but never charged, among the rows written invalid_syntax.
        if getattr(summary, "refused", 0):
            rows.append(("  refused by the API", f"{summary.refused:,}"))
        rows.append(("blank", f"{summary.blank:,}"))
        # A trial against the fake spends nothing: never call its validations credits.
        if getattr(summary, "simulated", False):
            rows.append(("simulated validations (no credits)", f"{summary.credits_spent:,}"))
        else:
            rows.append(("credits spent", f"{summary.credits_spent:,}"))
            if summary.possible_double_charges:
                rows.append(("possible double charges", f"{summary.possible_double_charges:,}"))
        # Why a finished job's re-run spent anything: --recheck bought old verdicts again.
        rows += [
            (f"  re-checked {kind}", f"{count:,}")
            for kind, count in summary.rechecked.items()
            if count
        ]
        # Rows, not credits: an email in many rows is paid once and counted on every row.
        rows.append(("verdicts (rows)", f"{sum(summary.verdicts.values()):,}"))
        rows += [(f"  {name}", f"{count:,}") for name, count in summary.verdicts.items()]
        if summary.remaining:
            rows.append(("still to validate", f"{summary.remaining:,}"))
        rows += [
            ("elapsed", f"{summary.elapsed_seconds:.1f} s"),
            ("output", summary.output),
        ]
        # --split: the files sales ops upload, each with its rows, under the output they split.
        split = getattr(summary, "split", {})
        if split:
            rows.append(("split files", f"{len(split):,}"))
        for value, item in split.items():
            rows.append((f"  {value}", f"{item.rows:,} rows: {Path(item.path).name}"))
        for name, value in rows:
            table.add_row(name, value)
        self.console.print(table)
        for warning in summary.warnings:
            self.console.print(f"warning: {warning}", highlight=False, soft_wrap=True)


def _quota(s: LiveStatus) -> str:
    """`quota USED/LIMIT`, never above the limit: the ledger also counts the safety margin
    past the window, and entries restamped on a 429."""
    if s.quota_used is None or s.usage_limit is None:
        return ""
    if s.usage_limit == SIMULATED_USAGE_LIMIT:
        return "quota unlimited (simulated)"  # not "0/1000000000/1h"
    return f"quota {min(s.quota_used(), s.usage_limit.count):,}/{s.usage_limit}"


def _quota_wait(s: LiveStatus) -> float | None:
    """Seconds until the next batch may be submitted, when emails wait for the usage window;
    None when nothing waits for it."""
    if s.next_submission is None or s.counters is None or s.stage != "validating":
        return None
    left = s.to_submit - s.counters.emails_submitted
    if left <= 0:
        return None
    try:
        wait = s.next_submission(left)
    except ValueError:  # a batch above the limit: the engine reports that itself
        return None
    return wait if wait > 0 else None


def _clock_in(seconds: float) -> str:
    """The local wall-clock time `seconds` from now, with the date when it is not today."""
    when = datetime.fromtimestamp(time.time() + seconds)
    return when.strftime(
        "%H:%M:%S" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M:%S"
    )


def utc_now() -> str:
    """Now as ISO 8601 UTC, to the second: `2026-12-02T14:05:12Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary_record(
    summary: Summary | None,
    *,
    exit_code: int,
    error: str | None,
    started_at: str,
    options: ValidateOptions,
) -> dict[str, Any]:
    """What --summary-json holds: the summary when the run got that far, with the exit code,
    the error, start and end times, and absolute paths, so a cron wrapper needs nothing else."""
    data: dict[str, Any] = summary.as_dict() if summary is not None else {}
    output = summary.output if summary is not None else options.output
    data.update(
        exit_code=exit_code,
        error=error,
        started_at=started_at,
        finished_at=utc_now(),
        input=os.path.abspath(options.input),
        output=None if output is None else os.path.abspath(output),
        state_dir=os.path.abspath(options.state_dir),
    )
    return data


def write_summary_json(path: Path, data: dict[str, Any]) -> str | None:
    """Write `data` to `path` atomically; the problem as a sentence if that failed."""
    where = path.absolute()
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(dir=where.parent, prefix=f".{where.name}.", suffix=".tmp")
        # mkstemp makes the file private; the summary gets the mode any new file would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(temp, where)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        return f"could not write the summary to {path}: {exc.strerror or exc}"
    return None


def _stdout_console() -> Console:
    """Tables for stdout: piped into a file or a cron mail, they need not fit 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _stderr_console() -> Console:
    """The run's report on stderr: the same width rule as stdout's tables, since a cron mail
    is read whole, not in an 80-column terminal."""
    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=200)


def print_estimate(estimate: Estimate) -> None:
    console = _stdout_console()
    table = Table(title=f"estimate for {estimate.input}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    finish = datetime.fromtimestamp(estimate.earliest_finish).strftime("%Y-%m-%d %H:%M")
    night = datetime.fromtimestamp(estimate.night_only_finish).strftime("%Y-%m-%d %H:%M")
    finishes = (
        f"{finish} (round the clock)",
        f"{night} ({estimate.night_only_nights:,} night(s), 8 h each)",
    )
    if not estimate.credits_needed:
        finishes = ("now: nothing to send", "now: nothing to send")
    for name, value in [
        ("email column", estimate.email_column),
        ("rows", f"{estimate.rows:,}"),
        ("unique valid emails", f"{estimate.unique_emails:,}"),
        ("blank", f"{estimate.blank:,}"),
        ("invalid syntax", f"{estimate.invalid:,}"),
        ("cache hits", f"{estimate.cached:,}"),
        ("already in this job", f"{estimate.already_done:,}"),
        ("credits needed", f"{estimate.credits_needed:,}"),
        *[(f"  re-checked {kind}", f"{count:,}") for kind, count in estimate.rechecked.items()],
        ("batches", f"{estimate.batches:,}"),
        ("requests (approx.)", f"{estimate.requests:,}"),
        ("last submission in", f"{estimate.seconds_to_last_submission / 3600:.1f} h"),
        ("earliest finish", finishes[0]),
        ("night-only finish", finishes[1]),
    ]:
        table.add_row(name, value)
    console.print(table)
    for warning in estimate.warnings:
        console.print(f"warning: {warning}", highlight=False, soft_wrap=True)


def simulated_hint(simulated: int) -> str:
    """What `status` adds where it found nothing but --simulate runs left jobs beside it."""
    if not simulated:
        return ""
    return f" ({simulated} simulated job{'s' if simulated != 1 else ''}: add --simulate)"


def print_status(
    jobs: list[JobStatus], state_dir: Path | str | None = None, *, simulated: int = 0
) -> None:
    """The jobs as a table; `state_dir` a dir, or a database as `State.where()` names it;
    `simulated`: how many jobs --simulate runs keep beside it, named where it has none."""
    console = _stdout_console()
    if isinstance(state_dir, Path):
        console.print(f"state dir: {state_dir}")
    elif state_dir is not None:
        console.print(f"state: {state_dir}", highlight=False)
    if not jobs:
        none = (
            "no jobs in this state dir"
            if isinstance(state_dir, Path) or state_dir is None
            else "no jobs in this state database"
        )
        console.print(none + simulated_hint(simulated), highlight=False)
        return
    table = Table()
    table.add_column("job", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for name in ("emails", "done", "failed", "pending"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    table.add_column("input", overflow="fold")
    for item in jobs:
        p = item.progress
        table.add_row(
            item.job.id,
            item.job.state,
            f"{p.emails:,}",
            f"{p.resolved:,}",
            f"{p.failed:,}",
            f"{p.pending:,}",
            datetime.fromtimestamp(item.job.updated_at).strftime("%Y-%m-%d %H:%M"),
            item.job.input_path,
        )
    console.print(table)
    for item in jobs:
        if item.pid:
            eta = "" if item.eta is None else f", ETA {_clock_time(item.eta)}"
            # With shared state the run may be on another machine.
            where = "" if item.host in (None, socket.gethostname()) else f" on host {item.host}"
            console.print(
                f"{item.job.id}: running in process {item.pid}{where}, "
                f"output {item.job.output_path}{eta}"
            )


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")

"""What the user sees: a live progress bar on a terminal, a log line every 30 s otherwise
(cron), and the end-of-run summary. Everything goes to stderr except tables asked for."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from pathlib import Path

    from .manage import Estimate, JobStatus
    from .run import LiveStatus, Summary

LOG_EVERY = 30.0


class Report:
    """Progress and summary output for one validate run."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.console = Console(stderr=True)
        self._tty = self.console.is_terminal and not quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._last_log = 0.0
        self._last_stage = ""

    def live(self, status: LiveStatus) -> None:
        """Called often during a run; draws or logs at its own pace."""
        if self.quiet:
            return
        if status.stage != self._last_stage:
            self._last_stage = status.stage
            if not self._tty or self.verbose:
                self._log(self._line(status))
        if self._tty:
            self._draw(status)
        elif time.monotonic() - self._last_log >= LOG_EVERY:
            self._log(self._line(status))

    def _line(self, s: LiveStatus) -> str:
        parts = [s.stage]
        if s.rows:
            parts.append(f"{s.rows:,} rows, {s.unique:,} unique emails")
        if s.counters is not None:
            c = s.counters
            parts.append(
                f"{c.emails_submitted:,}/{s.to_submit:,} submitted, {c.emails_resolved:,} validated"
            )
        if s.quota_used is not None and s.usage_limit is not None:
            parts.append(f"quota {s.quota_used():,}/{s.usage_limit}")
        return " · ".join(parts)

    def _log(self, line: str) -> None:
        self._last_log = time.monotonic()
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.console.print(f"{stamp} {line}", highlight=False, soft_wrap=True)

    def _draw(self, s: LiveStatus) -> None:
        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} emails"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[extra]}"),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(s.stage, total=None, extra="")
        done = s.counters.emails_resolved if s.counters else 0
        extra = ""
        if s.quota_used is not None and s.usage_limit is not None:
            extra = f"quota {s.quota_used():,}/{s.usage_limit}"
            if s.to_submit and s.counters:
                left = s.to_submit - s.counters.emails_submitted
                windows = max(0, -(-left // s.usage_limit.count) - 1)
                extra += f" · ETA ≥ {windows * s.usage_limit.period / 3600:.1f} h"
        self._bar.update(
            self._task,
            description=s.stage,
            completed=done,
            total=max(s.to_submit, 1),
            extra=extra,
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
            ("blank", f"{summary.blank:,}"),
            ("credits spent", f"{summary.credits_spent:,}"),
        ]
        if summary.possible_double_charges:
            rows.append(("possible double charges", f"{summary.possible_double_charges:,}"))
        rows += [(f"  {name}", f"{count:,}") for name, count in summary.verdicts.items()]
        if summary.remaining:
            rows.append(("still to validate", f"{summary.remaining:,}"))
        rows += [
            ("elapsed", f"{summary.elapsed_seconds:.1f} s"),
            ("output", summary.output),
        ]
        for name, value in rows:
            table.add_row(name, value)
        self.console.print(table)
        for warning in summary.warnings:
            self.console.print(f"warning: {warning}", highlight=False)


def _stdout_console() -> Console:
    """Tables for stdout: piped into a file or a cron mail, they need not fit 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_estimate(estimate: Estimate) -> None:
    console = _stdout_console()
    table = Table(title=f"estimate for {estimate.input}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    finish = datetime.fromtimestamp(estimate.earliest_finish).strftime("%Y-%m-%d %H:%M")
    for name, value in [
        ("email column", estimate.email_column),
        ("rows", f"{estimate.rows:,}"),
        ("unique valid emails", f"{estimate.unique_emails:,}"),
        ("blank", f"{estimate.blank:,}"),
        ("invalid syntax", f"{estimate.invalid:,}"),
        ("cache hits", f"{estimate.cached:,}"),
        ("already in this job", f"{estimate.already_done:,}"),
        ("credits needed", f"{estimate.credits_needed:,}"),
        ("batches", f"{estimate.batches:,}"),
        ("requests (approx.)", f"{estimate.requests:,}"),
        ("last submission in", f"{estimate.seconds_to_last_submission / 3600:.1f} h"),
        ("earliest finish", finish),
    ]:
        table.add_row(name, value)
    console.print(table)
    for warning in estimate.warnings:
        console.print(f"warning: {warning}", highlight=False)


def print_status(jobs: list[JobStatus], state_dir: Path | None = None) -> None:
    console = _stdout_console()
    if state_dir is not None:
        console.print(f"state dir: {state_dir}")
    if not jobs:
        console.print("no jobs in this state dir")
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
            console.print(
                f"{item.job.id}: running in process {item.pid}, output {item.job.output_path}{eta}"
            )


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")

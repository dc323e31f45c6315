"""Shared plumbing for the benchmark sections: paths, measured subprocesses, result tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"

# Arrow's default mimalloc pool costs 2-4x in kernel time on these VMs (issue 5); every child
# gets jemalloc so the pyarrow-based runs (ample-batch, and pandas' Arrow-backed strings)
# are measured the way users are told to run them.
CHILD_ENV = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "jemalloc", "PYTHONUNBUFFERED": "1"}


@dataclass
class Section:
    """One benchmark section's outcome: tables to print, notes, or why it could not run."""

    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None


@dataclass
class Table:
    """A titled grid of already-formatted cells."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    left: int = 1
    """How many leading columns hold labels (left-aligned); the rest are figures."""

    def render(self) -> str:
        """A Markdown pipe table, padded so it also reads well in a terminal."""
        grid = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in grid) for i in range(len(self.header))]

        def line(cells: list[str]) -> str:
            padded = [
                cell.ljust(w) if i < self.left else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "| " + " | ".join(padded) + " |"

        rule = (
            "|"
            + "|".join(
                "-" * (w + 1) + ("-" if i < self.left else ":") for i, w in enumerate(widths)
            )
            + "|"
        )
        body = [line(self.header), rule, *(line(row) for row in self.rows)]
        return f"**{self.title}**\n\n" + "\n".join(body)


@dataclass(frozen=True)
class Measured:
    """A child process run: its JSON answer, wall time and its own peak RSS."""

    wall: float
    peak_rss_mb: float
    returncode: int
    result: dict[str, Any]
    stderr: str
    others_cpu: float = 0.0
    """Share of the machine's CPU that other processes used meanwhile (0-1): noise."""

    @property
    def error(self) -> str | None:
        """None when the child succeeded, else a one-line reason."""
        if self.returncode == 0 and self.result:
            return None
        return f"exit {self.returncode}: {last_line(self.stderr)}"


def last_line(text: str) -> str:
    """The last non-blank line of a child's output: the error line of a traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def run_measured(args: list[str], *, timeout: float = 900.0) -> Measured:
    """Run `args` in a fresh process; parse the last stdout line as JSON.

    Peak RSS is the child's own `peak_rss_mb` when its JSON has one (see
    `io_tasks.peak_rss_mb`: `ru_maxrss` of a child counts the parent's peak too), else
    `os.wait4` on this one child (`RUSAGE_CHILDREN` would keep the maximum of every earlier
    child, so a small run after a big one would inherit its peak).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy_before = _busy_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT, env=CHILD_ENV)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        others = _busy_cpu_seconds() - busy_before - usage.ru_utime - usage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    # ru_maxrss is in KiB on Linux.
    peak_mb = float(result.get("peak_rss_mb", usage.ru_maxrss / 1024))
    others_share = max(0.0, others) / (wall * (os.cpu_count() or 1))
    return Measured(wall, peak_mb, proc.returncode, result, stderr, others_share)


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux `/proc/stat`)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    # guest time is already counted in user time.
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def python_module(module: str, *args: object) -> list[str]:
    """The command line that runs `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_any(value: object) -> str:
    """A count read from JSON with thousands separators; anything else as it is."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_mb(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} MB" if value < 1024 else f"{value / 1024:.2f} GB"

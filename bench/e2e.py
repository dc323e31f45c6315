"""Section 5, end to end: a whole `validate` job of 1M and 5M rows against `mock-server`.

Both run in their own processes, as a user would run them, with every limit lifted on both
sides (the fake processes emails almost at once and answers polls after 50 ms), so what is
measured is ample-batch itself: wall time and the ample-batch process's peak RSS per phase.

Phases are read from the CLI's own `-v` stage lines (report.py): scanning, planning,
validating (submit and fetch), writing. The peak of each phase is exact, not sampled: at each
stage line the harness reads the process's high-water mark (`VmHWM` in /proc/<pid>/status),
then resets it (`5` to /proc/<pid>/clear_refs), so the next reading covers the next phase
alone. Where the reset is not allowed, a 20 ms sample of `VmRSS` stands in (the note says so).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import CHILD_ENV, ROOT, Section, Table, fmt_mb, fmt_seconds, last_line
from .fakeapi import API_KEY, fresh_dir, traceback_in
from .io import ensure_leads

ROW_COUNTS = (1_000_000, 5_000_000)
LIMITS = ("--usage-limit", "1000000000/hour", "--rate-limit", "1000000/minute")
FAKE_OPTIONS = ("--emails-per-second", "10000000", "--retry-after", "0.05")
PHASES = {
    "checking the API key": "start and key check",
    "scanning": "scan",
    "planning": "plan",
    "validating": "submit and fetch",
    "writing": "write",
}
PATIENCE = 1800.0
"""Seconds one job may take before the harness gives up on it."""
BUDGET_MB = {5_000_000: 3 * 1024}
"""The issue's ceiling: the 5M job stays under 3 GB."""


@dataclass
class Phase:
    name: str
    started: float
    seconds: float = 0.0
    peak_kb: int = 0


@dataclass
class Watch:
    """One `validate` process: its stage lines as they come and its memory per phase."""

    proc: subprocess.Popen[str]
    started: float
    phases: list[Phase] = field(default_factory=list)
    exact: bool = True
    hwm_kb: int = 0
    """The last VmHWM read: the whole run's peak when the reset is refused."""
    text: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read_lines(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.text.append(line)
            # "2026-01-01 12:00:00 scanning · ..." -> "scanning"
            stage = line.rstrip("\n")[20:].split(" · ", 1)[0].strip()
            if stage in PHASES and (not self.phases or self.phases[-1].name != PHASES[stage]):
                self._enter(PHASES[stage])

    def _enter(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            if not self.phases:
                # The first phase also covers the interpreter's start and imports.
                self.phases.append(Phase(name, self.started))
                return
            self._close(self.phases[-1], now)
            self.phases.append(Phase(name, now))
            self.exact = self.exact and _reset_peak(self.proc.pid)

    def _close(self, phase: Phase, now: float) -> None:
        phase.seconds = now - phase.started
        if self.exact:
            phase.peak_kb = max(phase.peak_kb, _status_kb(self.proc.pid, "VmHWM"))

    def sample(self) -> None:
        """Keep each phase's largest VmRSS too: the fallback when the reset is refused."""
        while self.proc.poll() is None:
            with self._lock:
                rss = _status_kb(self.proc.pid, "VmRSS")
                # Read the high-water mark while it exists: at exit /proc/<pid> is gone.
                hwm = _status_kb(self.proc.pid, "VmHWM")
                self.hwm_kb = max(self.hwm_kb, hwm) if not self.exact else self.hwm_kb
                if self.phases:
                    phase = self.phases[-1]
                    phase.peak_kb = max(phase.peak_kb, hwm if self.exact else rss)
            time.sleep(0.02)

    def finish(self) -> None:
        with self._lock:
            if self.phases:
                self.phases[-1].seconds = time.monotonic() - self.phases[-1].started


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs, value 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class MockServer:
    """`ample-batch mock-server` in its own process, on a free loopback port."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "ample_batch", "mock-server", "--port", "0"]
        command += ["--api-key", API_KEY, *FAKE_OPTIONS]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=CHILD_ENV, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Fake Amplemarket API on http://... (api key: ...)"
        if " on http" not in line:
            self.proc.kill()
            raise RuntimeError(f"mock-server did not start: {line.strip() or 'no output'}")
        self.url = line.split(" on ", 1)[1].split()[0]

    def summary(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/_fake/summary", timeout=30) as reply:
            return dict(json.loads(reply.read()))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> MockServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Outcome:
    rows: int
    wall: float
    returncode: int
    phases: list[Phase]
    exact: bool
    hwm_kb: int
    summary: dict[str, object]
    fake: dict[str, object]
    stderr: str


def run_job(rows: int) -> Outcome:
    src = ensure_leads(rows, "csv")
    state = fresh_dir(f"e2e-state-{rows}")
    out, summary_path = state / "out.csv", state / "summary.json"
    with MockServer() as fake:
        command = [sys.executable, "-m", "ample_batch", "validate", str(src), "-o", str(out)]
        command += ["--base-url", fake.url, "--state-dir", str(state), *LIMITS]
        command += ["--summary-json", str(summary_path), "-v"]
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**CHILD_ENV, "AMPLEMARKET_API_KEY": API_KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        watch = Watch(proc, started)
        jobs = (watch.read_lines, watch.sample)
        readers = [threading.Thread(target=job, daemon=True) for job in jobs]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.monotonic() - started
        for reader in readers:
            reader.join(timeout=10)
        watch.finish()
        fake_summary = fake.summary()
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return Outcome(
        rows,
        wall,
        proc.returncode,
        watch.phases,
        watch.exact,
        watch.hwm_kb,
        summary,
        fake_summary,
        "".join(watch.text),
    )


def run(log: Callable[[str], None], row_counts: tuple[int, ...] = ROW_COUNTS) -> Section:
    section = Section("End to end")
    names = list(dict.fromkeys(PHASES.values()))
    times = Table("Wall time per phase", ["rows", *names, "whole run", "exit"])
    peaks = Table("ample-batch peak RSS per phase", ["rows", *names, "whole run", "budget"])
    checks = Table(
        "What the fake saw",
        ["rows", "unique emails", "credits", "charged twice", "requests", "429s"],
    )
    exact = True
    for rows in row_counts:
        log(f"e2e: {rows:,} rows through validate against mock-server")
        outcome = run_job(rows)
        if outcome.returncode != 0 or not outcome.summary:
            section.notes.append(
                f"{rows:,} rows: validate exited {outcome.returncode}: {last_line(outcome.stderr)}"
            )
            continue
        exact = exact and outcome.exact
        by_name = {p.name: p for p in outcome.phases}
        peak_kb = max([p.peak_kb for p in outcome.phases] + [outcome.hwm_kb])
        budget = BUDGET_MB.get(rows)
        times.rows.append(
            [
                f"{rows:,}",
                *[fmt_seconds(by_name[n].seconds) if n in by_name else "-" for n in names],
                fmt_seconds(outcome.wall),
                str(outcome.returncode),
            ]
        )
        peaks.rows.append(
            [
                f"{rows:,}",
                *[fmt_mb(by_name[n].peak_kb / 1024) if n in by_name else "-" for n in names],
                fmt_mb(peak_kb / 1024),
                "-" if budget is None else f"< {fmt_mb(budget)}",
            ]
        )
        fake = outcome.fake
        limited = int(str(fake.get("rate_limited", 0))) + int(str(fake.get("usage_limited", 0)))
        checks.rows.append(
            [
                f"{rows:,}",
                f"{outcome.summary.get('unique_emails', 0):,}",
                f"{fake.get('credits_spent', 0):,}",
                f"{fake.get('emails_charged_twice', 0):,}",
                f"{fake.get('requests', 0):,}",
                str(limited),
            ]
        )
        if traceback_in(outcome.stderr):
            section.notes.append(f"{rows:,} rows: a traceback was printed by `validate`.")
        log(f"e2e: {rows:,} rows done in {outcome.wall:.1f} s, peak {peak_kb / 1024:,.0f} MB")
    section.tables += [times, peaks, checks]
    section.notes.append(
        "`ample-batch validate -v` on the generated CSV against `ample-batch mock-server`, each"
        f" in its own process; limits lifted on both sides ({' '.join(LIMITS)};"
        f" fake {' '.join(FAKE_OPTIONS)}); a fresh state dir per job."
    )
    section.notes.append(
        "Phases start at the CLI's stage lines; `start and key check` is the interpreter start,"
        " imports and the key check. "
        + (
            "Each phase's peak is the process's VmHWM, reset at every stage line."
            if exact
            else "The kernel refused the VmHWM reset: each phase's peak is its largest VmRSS"
            " sampled every 20 ms, and the whole run's is the final VmHWM."
        )
    )
    return section

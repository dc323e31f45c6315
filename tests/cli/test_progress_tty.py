"""The progress display on a real (pseudo-)terminal, and the log lines without one.

`ample-batch validate leads.csv` on a terminal crashed in the progress bar (exit 1, "unexpected
error: TypeError"); it only worked with -q or stderr redirected, which is all the other tests
do. Here the command runs with a pty as its stdout and stderr, through a whole job that has to
wait for the usage window at least twice.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import ROOT, lead_rows, read_csv, write_leads

from ample_batch.cli.report import Report
from ample_batch.jobs.follow import Counters
from ample_batch.limits import Limit
from ample_batch.options import SIMULATED_USAGE_LIMIT
from ample_batch.pipeline.summary import LiveStatus

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_on_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run `python -m ample_batch ARGS` with a pty as stdout and stderr; its exit code and
    everything it printed."""
    master, slave = pty.openpty()
    # A terminal 100 columns wide, 30 rows high, as a user's would be.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ample_batch", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"no exit after {timeout} s")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _env(tmp_path: Path, term: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLE", "COLUMNS", "LINES"))}
    env.update(PYTHONPATH=str(ROOT), TERM=term, AMPLE_BATCH_HOME=str(tmp_path / "home"))
    env.pop("NO_COLOR", None)
    return env


WAIT_LINE = re.compile(r"^[\d-]+ [\d:]+ validating · waiting for quota: next batch at", re.M)

# Three batches of 500 in a 500/1s window: the second and third each wait for the window,
# which is twice the display's tick (0.5 s), so every wait is seen.
QUOTA_BOUND = ["--simulate", "--usage-limit", "500/1s", "--chunk-size", "500"]


@pytest.mark.parametrize(
    ("term", "flags"),
    [("xterm", []), ("xterm", ["-v"]), ("dumb", []), ("dumb", ["-v"])],
    ids=["xterm", "xterm-v", "dumb", "dumb-v"],
)
def test_validate_on_a_terminal_through_waits_for_quota(
    tmp_path: Path, term: str, flags: list[str]
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(1500))
    out = tmp_path / "out.csv"
    args = ["validate", str(src), "-o", str(out), "--state-dir", str(tmp_path / "s")]
    code, printed = run_on_pty([*args, *QUOTA_BOUND, *flags], _env(tmp_path, term))
    text = ANSI.sub("", printed)
    assert "unexpected error" not in text and "Traceback" not in text, text
    assert code == 0, text
    assert out.exists()
    assert len(read_csv(out)) == len(lead_rows(1500))
    assert "ample-batch summary" in text
    # The display says when the next batch may go while it waits for the usage window;
    # without a bar to redraw, a log line says so once for each of the two waits.
    assert re.search(r"waiting for quota: next batch at \d\d:\d\d:\d\d", text), text
    if term == "dumb":
        assert len(WAIT_LINE.findall(text)) >= 2, text
    # The quota shown never exceeds the limit.
    for used in re.findall(r"quota ([\d,]+)/500/1s", text):
        assert int(used.replace(",", "")) <= 500, text


def test_progress_fits_a_narrow_terminal(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(600))
    out = tmp_path / "out.csv"
    master_args = ["validate", str(src), "-o", str(out), "--state-dir", str(tmp_path / "s")]
    env = _env(tmp_path, "xterm")
    env["COLUMNS"] = "40"
    code, printed = run_on_pty([*master_args, *QUOTA_BOUND], env)
    assert code == 0, ANSI.sub("", printed)
    assert out.exists()


def test_log_lines_without_a_terminal_say_when_the_next_batch_goes(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(1500))
    out = tmp_path / "out.csv"
    args = ["validate", str(src), "-o", str(out), "--state-dir", str(tmp_path / "s")]
    done = subprocess.run(
        [sys.executable, "-m", "ample_batch", *args, *QUOTA_BOUND],
        env=_env(tmp_path, "xterm"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(WAIT_LINE.findall(done.stderr)) >= 2, done.stderr
    for used in re.findall(r"quota ([\d,]+)/500/1s", done.stderr):
        assert int(used.replace(",", "")) <= 500, done.stderr


def _status(**changes: object) -> LiveStatus:
    status = LiveStatus(
        stage="validating",
        rows=40_000,
        unique=30_000,
        to_submit=30_000,
        counters=Counters(emails_submitted=15_000, emails_resolved=15_000),
        quota_used=lambda: 26_000,  # window + margin + restamped entries, as seen in a run
        usage_limit=Limit(15_000, 3600.0),
        next_submission=lambda emails: 754.0,
    )
    for name, value in changes.items():
        setattr(status, name, value)
    return status


def test_log_line_caps_the_quota_at_the_limit_and_says_when_the_next_batch_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = datetime.now() + timedelta(seconds=754)
    Report().live(_status())
    after = datetime.now() + timedelta(seconds=754)
    line = capsys.readouterr().err
    assert "quota 15,000/15000/1h" in line and "26,000" not in line
    shown = re.search(r"waiting for quota: next batch at (\d\d:\d\d:\d\d)", line)
    assert shown, line
    assert shown.group(1) in {before.strftime("%H:%M:%S"), after.strftime("%H:%M:%S")}


def test_a_trials_unlimited_quota_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    Report().live(_status(usage_limit=SIMULATED_USAGE_LIMIT, next_submission=None))
    line = capsys.readouterr().err
    assert "quota unlimited (simulated)" in line and "1000000000" not in line


def test_no_wait_is_shown_when_nothing_is_left_to_submit_or_it_cannot_be_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def never_fits(emails: int) -> float:
        raise ValueError("a batch above the limit")

    Report().live(_status(counters=Counters(emails_submitted=30_000)))
    Report().live(_status(next_submission=never_fits))
    Report().live(_status(next_submission=lambda emails: 0.0))
    text = capsys.readouterr().err
    assert len(text.splitlines()) == 3
    assert "waiting" not in text


def test_without_a_terminal_a_long_warning_and_the_summary_are_not_wrapped(tmp_path: Path) -> None:
    # A cron mail is stderr captured whole: a warning folded at 80 columns reads as two.
    src = write_leads(tmp_path / ("a-long-name-for-a-lead-list-export-" * 2 + ".csv"), lead_rows(5))
    proc = subprocess.run(
        [sys.executable, "-m", "ample_batch", "validate", str(src), "--simulate"],
        env={**os.environ, "AMPLE_BATCH_HOME": str(tmp_path / "s"), "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warning.endswith("are made up; no credit was spent") and len(warning) > 100
    assert any(line.rstrip("│ ").endswith(".validated.csv") for line in proc.stderr.splitlines())

"""Cron users (issue 14, part 5): the README's cron entries, run as cron would run them against
the fake API with the clock scaled down, finish a job quietly and keep the key busy; every
expected exit 75 is silent with `-q`; `estimate` gives the finish time of both recipes."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from helpers import KEY, ROOT, FakeInThread, cli, lead_rows, read_csv, write_leads

from ample_batch.files.inspect import fingerprint, inspect_input
from ample_batch.jobs.locks import FileLocks, job_lock
from ample_batch.jobs.records import job_id_for
from ample_batch.jobs.state_dir import make_state_dir
from ample_batch.limits import parse_duration, parse_limit
from ample_batch.quota.ideal import night_only_last_submission

README = (ROOT / "README.md").read_text()
RUN_SECONDS = 3.5  # short nights keep the suite fast; a run still gets ~2 s after start-up
"""What each README run's --max-runtime becomes: its hours scale down to fit this."""
PER_HOUR = 100
"""The usage limit, emails per (scaled) hour."""


@dataclass(frozen=True)
class CronEntry:
    schedule: str
    """The five time fields."""
    args: list[str]
    """The `ample-batch` command's arguments."""
    line: str

    @property
    def every(self) -> float:
        """Seconds between firings: the README shows hourly and daily entries."""
        minute, hour, *rest = self.schedule.split()
        if not (minute.isdigit() and rest == ["*", "*", "*"]):
            raise AssertionError(f"teach the test this schedule: {self.schedule}")
        if hour == "*":
            return 3600.0
        assert hour.isdigit(), self.schedule
        return 86400.0

    @property
    def max_runtime(self) -> float:
        assert "--max-runtime" in self.args, f"a cron entry without --max-runtime: {self.line}"
        return parse_duration(self.args[self.args.index("--max-runtime") + 1])


def _cron_entries() -> list[CronEntry]:
    entries = []
    for block in re.findall(r"^```cron\n(.*?)^```", README, re.S | re.M):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split(None, 5)
            words = shlex.split(fields[5])
            assert "ample-batch" in words, line
            entries.append(
                CronEntry(" ".join(fields[:5]), words[words.index("ample-batch") + 1 :], line)
            )
    return entries


ENTRIES = _cron_entries()


def test_the_readme_has_a_round_the_clock_and_a_night_only_entry() -> None:
    kinds = {(entry.every, entry.max_runtime) for entry in ENTRIES}
    assert {(3600.0, 55 * 60.0), (86400.0, 8 * 3600.0)} <= kinds
    for entry in ENTRIES:
        assert entry.args[:2] == ["validate", "leads.csv"] and "-q" in entry.args


def _scaled(entry: CronEntry, hour: float, fake: FakeInThread, state: Path) -> list[str]:
    """The entry's command with its hours made `hour` seconds long, on the fake API."""
    args = list(entry.args)
    at = args.index("--max-runtime") + 1
    args[at] = f"{entry.max_runtime / 3600 * hour:.3f}s"
    return [
        *args,
        "--base-url",
        fake.url,
        "--state-dir",
        str(state),
        "--usage-limit",
        f"{PER_HOUR}/{hour:.3f}s",
    ]


def _posts(fake: FakeInThread) -> list[float]:
    return [entry.time for entry in fake.api.log if entry.method == "POST"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.schedule for entry in ENTRIES])
def test_a_readme_cron_entry_finishes_the_job_quietly_using_every_window(
    entry: CronEntry, tmp_path: Path
) -> None:
    """Cron starts the command at each firing, whether or not the last run is still going.

    Time where no run is alive and the usage window has passed since the last submission
    (a night-only job's day) is skipped: nothing would happen in it.
    """
    hour = RUN_SECONDS * 3600 / entry.max_runtime
    window = hour  # the usage limit's period
    nights = entry.every > entry.max_runtime * 2
    # Two hourly runs, or two nights (each loses a second and a half to starting up).
    unique = 800 if nights else 200
    write_leads(tmp_path / "leads.csv", lead_rows(unique, blanks=2))
    state = tmp_path / "s"
    env = {**os.environ, "AMPLEMARKET_API_KEY": KEY}
    runs: list[subprocess.Popen[str]] = []
    with FakeInThread(
        retry_after=0.1,
        emails_per_second=50_000,
        usage_limit=parse_limit(f"{PER_HOUR}/{window:.3f}s"),
    ) as fake:
        command = [sys.executable, "-m", "ample_batch", *_scaled(entry, hour, fake, state)]
        next_firing = time.monotonic()
        deadline = next_firing + 120
        while not any(run.poll() == 0 for run in runs):
            assert time.monotonic() < deadline, "the job never finished"
            alive = [run for run in runs if run.poll() is None]
            posts = _posts(fake)
            idle_from = (posts[-1] if posts else 0.0) + window
            if not alive and idle_from < next_firing:
                next_firing = max(idle_from, time.monotonic())
            if time.monotonic() >= next_firing:
                runs.append(
                    subprocess.Popen(
                        command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )  # fmt: skip
                next_firing += entry.every / 3600 * hour
            time.sleep(0.02)
        for run in runs:
            run.wait(timeout=60)
        summary = fake.summary()
        posts = _posts(fake)

    for run in runs:
        out, err = run.communicate()
        assert run.returncode in (0, 75), err
        assert (out, err) == ("", ""), "with -q an expected exit 75 says nothing"
    assert len(runs) >= 2, "the job was meant to need more than one run"
    rows = read_csv(tmp_path / "leads.validated.csv")
    assert not {row["email_result"] for row in rows} & {"pending", "failed"}
    assert summary.credits_spent == unique and summary.emails_submitted_twice == 0
    assert (summary.usage_limited, summary.rate_limited) == (0, 0)
    assert summary.peak_emails_in_window <= PER_HOUR
    assert len(posts) == -(-unique // PER_HOUR)
    gaps = [later - earlier for earlier, later in itertools.pairwise(posts)]
    if nights:
        # Within a night, one batch per window; between nights, the day.
        assert sum(gap < 1.5 * window for gap in gaps) >= len(gaps) - (len(runs) - 1)
    else:
        # Round the clock: no window goes by without its batch.
        assert max(gaps) < 1.5 * window, gaps


def _validate(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def _quiet(done: subprocess.CompletedProcess[str], reason: str) -> None:
    assert done.returncode == 75, done.stderr
    assert (done.stdout, done.stderr) == ("", ""), f"{reason}: -q must say nothing"


def test_quiet_max_runtime_in_the_middle_of_the_work(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    with FakeInThread(retry_after=0.2, emails_per_second=200) as fake:
        loud = cli(*_validate(fake, src, tmp_path / "s", "--max-runtime", "1s"))
        assert loud.returncode == 75 and "max runtime reached" in loud.stderr
        _quiet(cli(*_validate(fake, src, tmp_path / "s", "--max-runtime", "1s", "-q")), "deadline")


def test_quiet_when_the_quota_opens_only_after_the_max_runtime(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(300))
    state = tmp_path / "s"
    with FakeInThread(retry_after=0.1, emails_per_second=50_000) as fake:
        args = _validate(fake, src, state, "--usage-limit", "100/1h", "--max-runtime", "55m")
        # The first run sends the hour's 100 and stops; the second has nothing it may send.
        loud = cli(*args)
        assert loud.returncode == 75, loud.stderr
        assert "max runtime reached before the quota allows more" in loud.stderr
        _quiet(cli(*args, "-q"), "the quota's wait")
        assert fake.summary().credits_spent == 100


def test_quiet_when_the_key_check_waits_past_the_max_runtime(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(20))
    state = tmp_path / "s"
    with FakeInThread() as fake:
        args = _validate(fake, src, state, "--rate-limit", "1/1h", "--max-runtime", "1s", "-q")
        # The first run's key check takes the hour's only request slot.
        _quiet(cli(*args), "the first run")
        _quiet(cli(*args), "a key check waiting for a request slot")


def test_quiet_when_the_previous_run_still_holds_the_job(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(20))
    state = tmp_path / "s"
    spec = inspect_input(src)
    job_id = job_id_for(str(src.resolve()), fingerprint(spec), spec.email_column)
    make_state_dir(state)
    with FakeInThread() as fake, job_lock(FileLocks(state), job_id):
        loud = cli(*_validate(fake, src, state))
        assert loud.returncode == 75 and "already running" in loud.stderr
        _quiet(cli(*_validate(fake, src, state, "-q")), "a busy job")
        assert fake.summary().requests == 0


def test_estimate_gives_the_finish_of_both_recipes(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    args = ["estimate", str(src), "--state-dir", str(tmp_path / "s"), "--usage-limit", "100/hour"]
    data = json.loads(cli(*args, "--json").stdout)
    # Ten batches an hour apart: nine hours round the clock, two nights of eight batches.
    assert data["seconds_to_last_submission"] == 9 * 3600
    now = data["earliest_finish"] - data["seconds_to_last_submission"]
    expected = night_only_last_submission(now, 9 * 3600.0, 3600.0)
    assert data["night_only_nights"] == expected.nights == 2
    assert data["night_only_finish"] == pytest.approx(expected.last_submission)
    assert datetime.fromtimestamp(data["night_only_finish"]).hour == 23
    table = cli(*args).stdout
    night = datetime.fromtimestamp(data["night_only_finish"]).strftime("%Y-%m-%d %H:%M")
    assert "(round the clock)" in table
    assert "night-only finish" in table and f"{night} (2 night(s), 8 h each)" in table

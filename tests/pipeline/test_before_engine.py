"""The steps before any submission (the key check, its wait for a request slot) keep to
--max-runtime and Ctrl-C like the engine does: a hung API or a full ledger cannot hold a cron
run past its window (issue 11, 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import KEY, FakeInThread, cli, lead_rows, write_leads


def _posts(fake: FakeInThread) -> int:
    return sum(entry.method == "POST" for entry in fake.running.api.log)


def test_a_hung_key_check_ends_at_the_max_runtime(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(latency=12.0) as fake:
        started = time.monotonic()
        done = cli(
            "validate", str(src), "--base-url", fake.url, "--state-dir", str(tmp_path / "s"),
            "--max-runtime", "2s",
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert done.returncode == 75, done.stderr
        assert "max runtime reached while checking the key" in done.stderr
        assert elapsed < 10, elapsed  # the answer would have taken 12 s
        assert _posts(fake) == 0


def test_a_key_check_waiting_for_a_request_slot_ends_at_the_max_runtime(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    state = tmp_path / "s"
    with FakeInThread() as fake:
        args = ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state)]
        args += ["--rate-limit", "1/1h", "--max-runtime", "2s"]
        # The first run's key check takes the hour's only request slot.
        assert cli(*args).returncode == 75
        started = time.monotonic()
        again = cli(*args)
        assert again.returncode == 75, again.stderr
        assert "max runtime reached while checking the key" in again.stderr
        assert time.monotonic() - started < 15
        assert _posts(fake) == 0


def test_ctrl_c_during_a_hung_key_check_stops_at_once(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(latency=30.0) as fake:
        env = {**os.environ, "AMPLEMARKET_API_KEY": KEY}
        args = ["validate", str(src), "--base-url", fake.url, "--state-dir", str(tmp_path / "s")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "ample_batch", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The stage line comes once the signal handlers are in place and the check has begun.
        assert proc.stderr is not None
        seen = ""
        while "checking the API key" not in seen:
            line = proc.stderr.readline()
            assert line, "the run ended before checking the key"
            seen += line
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        assert time.monotonic() - sent < 10
        assert proc.returncode == 75, stderr
        assert time.monotonic() - sent < 10
        assert "Traceback" not in stderr
        assert _posts(fake) == 0

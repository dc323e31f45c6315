"""Issue 11, 3: an email in flight in another job on the same key is never bought again.

A nightly regenerated export (rows reordered, some added) is a new job; two jobs may share
emails. Each email must be POSTed once over all of them, and every job's output must carry
the verdicts the other's batch paid for.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import (
    KEY,
    FakeInThread,
    batch_states,
    expected_result,
    lead_rows,
    read_csv,
    write_leads,
)


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ample_batch", *args],
        env={**os.environ, "AMPLEMARKET_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _args(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


def _assert_verdicts(src: Path, out: Path) -> None:
    rows = read_csv(out)
    assert len(rows) == len(read_csv(src))
    for row in rows:
        assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])


def test_a_regenerated_input_adopts_the_previous_jobs_batch(tmp_path: Path) -> None:
    rows = lead_rows(300)
    src = write_leads(tmp_path / "leads.csv", rows)
    state = tmp_path / "state"
    # Slow processing: the first job's batch is still running when it is stopped.
    with FakeInThread(retry_after=0.2, emails_per_second=60) as fake:
        first = _popen(*_args(fake, src, state, "--usage-limit", "1000/2s"))
        _wait_for(lambda: [s for s, _ in batch_states(state)] == ["running"])
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=30)
        assert first.returncode == 75, err

        # Tonight's export: the same people in another order, and 100 new ones.
        regenerated = rows + lead_rows(100, start=1000)
        random.Random(7).shuffle(regenerated)
        write_leads(src, regenerated)
        second = _popen(*_args(fake, src, state, "--usage-limit", "1000/2s"))
        _out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err
        summary = fake.summary()

    # The fake's log: every email POSTed exactly once over both runs.
    assert summary.emails_submitted_twice == 0
    assert summary.emails_submitted == 400
    assert summary.emails_charged_twice == 0
    _assert_verdicts(src, tmp_path / "leads.validated.csv")


def test_two_concurrent_jobs_buy_each_shared_email_once(tmp_path: Path) -> None:
    first = write_leads(tmp_path / "a.csv", lead_rows(2000))
    second = write_leads(tmp_path / "b.csv", lead_rows(2000, start=1000))
    state = tmp_path / "state"
    limits = ("--usage-limit", "500/1s", "--rate-limit", "200/1s")
    with FakeInThread(retry_after=0.2, emails_per_second=2000) as fake:
        procs = [_popen(*_args(fake, src, state, *limits)) for src in (first, second)]
        for proc in procs:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        summary = fake.summary()

    assert summary.emails_submitted_twice == 0
    assert summary.emails_submitted == 3000
    assert summary.emails_charged_twice == 0
    _assert_verdicts(first, tmp_path / "a.validated.csv")
    _assert_verdicts(second, tmp_path / "b.validated.csv")

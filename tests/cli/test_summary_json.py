"""`--summary-json` and the end-of-run summary: checked before anything is spent, written on
every exit with the exit code, times and absolute paths, and never hiding the job's exit code;
the table keeps verdict counts (rows) apart from credits; -q keeps a planned stop silent."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, FakeInThread, cli, lead_rows, write_leads

from ample_batch.cli.report import Report
from ample_batch.pipeline.summary import Summary

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _validate(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert ISO_UTC.match(data["started_at"]) and ISO_UTC.match(data["finished_at"])
    assert data["started_at"] <= data["finished_at"]
    return data


@pytest.mark.parametrize("kind", ["directory", "missing parent", "parent is a file"])
def test_a_bad_summary_path_is_refused_before_anything_is_spent(tmp_path: Path, kind: str) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(50))
    (tmp_path / "plain").write_text("x")
    target = {
        "directory": tmp_path,
        "missing parent": tmp_path / "nowhere" / "s.json",
        "parent is a file": tmp_path / "plain" / "s.json",
    }[kind]
    with FakeInThread(retry_after=0.1) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "--summary-json", str(target)))
        assert fake.summary().requests == 0, "not even the key check may go out"
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ample-batch: --summary-json ")
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "a.validated.csv").exists()


def test_summary_on_success_has_exit_code_times_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_leads(tmp_path / "a.csv", lead_rows(100))
    monkeypatch.chdir(tmp_path)
    done = cli("validate", "a.csv", "--simulate", "--state-dir", "st", "--summary-json", "s.json")
    assert done.returncode == 0, done.stderr
    data = _read(tmp_path / "s.json")
    assert data["exit_code"] == 0 and data["error"] is None
    assert data["input"] == str(tmp_path / "a.csv")
    assert data["output"] == str(tmp_path / "a.validated.csv")
    assert data["state_dir"] == str(tmp_path / "st")
    assert data["complete"] is True and data["unique_emails"] == 100


def test_summary_on_exit_75_then_quiet_prints_nothing(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    state, path = tmp_path / "s", tmp_path / "s.json"
    with FakeInThread(retry_after=0.2, emails_per_second=200) as fake:
        stopped = cli(
            *_validate(fake, src, state, "--max-runtime", "1s", "--summary-json", str(path))
        )
        assert stopped.returncode == 75, stopped.stderr
        data = _read(path)
        assert data["exit_code"] == 75 and data["complete"] is False
        assert "run the same command again" in data["error"]
        assert data["output"] == str(tmp_path / "a.validated.partial.csv")
        assert data["remaining"] > 0
        # What cron runs every night: a planned stop says nothing, so nothing is mailed.
        quiet = cli(*_validate(fake, src, state, "--max-runtime", "1s", "-q"))
        assert quiet.returncode == 75
        assert (quiet.stdout, quiet.stderr) == ("", "")


def test_quiet_still_prints_errors_that_are_not_planned_stops(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(10))
    with FakeInThread(retry_after=0.1, api_key="another-key") as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "-q"))
    assert done.returncode == 3
    assert done.stderr.startswith("ample-batch: ")


def test_summary_on_exits_before_any_summary(tmp_path: Path) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_text("Name,Email\n")
    bad_input = cli("validate", str(header_only), "--simulate", "--state-dir", str(tmp_path / "s"),
                    "--summary-json", str(tmp_path / "2.json"))  # fmt: skip
    assert bad_input.returncode == 2
    data = _read(tmp_path / "2.json")
    assert data["exit_code"] == 2 and data["input"] == str(header_only)
    assert data["error"] and "\n" not in data["error"]

    src = write_leads(tmp_path / "a.csv", lead_rows(10))
    with FakeInThread(retry_after=0.1, api_key="another-key") as fake:
        rejected = cli(
            *_validate(fake, src, tmp_path / "s", "--summary-json", str(tmp_path / "3.json"))
        )
    assert rejected.returncode == 3
    assert _read(tmp_path / "3.json")["exit_code"] == 3
    assert KEY not in (tmp_path / "3.json").read_text()


def test_summary_on_out_of_credits(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    path = tmp_path / "4.json"
    with FakeInThread(retry_after=0.1, credits=500) as fake:
        done = cli(
            *_validate(
                fake, src, tmp_path / "s", "--chunk-size", "500", "--summary-json", str(path)
            )
        )
    assert done.returncode == 4, done.stderr
    data = _read(path)
    assert data["exit_code"] == 4 and data["complete"] is False
    assert data["credits_spent"] == 500
    # Why it stopped, as on every other early exit (it was null).
    assert data["stop_reason"] == "out of credits"


def test_a_summary_that_cannot_be_written_keeps_exit_75(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    state, where = tmp_path / "s", tmp_path / "reports"
    where.mkdir()
    with FakeInThread(retry_after=0.2, emails_per_second=100) as fake:
        args = _validate(fake, src, state, "--summary-json", str(where / "s.json"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "ample_batch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "AMPLEMARKET_API_KEY": KEY},
        )
        # Credits are being spent: now the summary's directory disappears, then the run is
        # stopped (SIGTERM: what cron's timeout or a Ctrl-C does).
        deadline = time.monotonic() + 60
        while fake.summary().credits_spent < 50:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        shutil.rmtree(where)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr
    assert "ample-batch: warning: could not write the summary to" in stderr
    assert "run the same command again" in stderr


def _summary(**changes: Any) -> Summary:
    fields: dict[str, Any] = dict(
        job="abc", input="a.csv", email_column="Email", output="a.validated.csv", complete=True,
        rows=12, unique_emails=5, cached=0, invalid=1, blank=1, duplicates=5, credits_spent=5,
        possible_double_charges=0, remaining=0, failed=0,
        verdicts={"deliverable": 8, "invalid_syntax": 2, "no_email": 2}, elapsed_seconds=1.0,
    )  # fmt: skip
    fields.update(changes)
    return Summary(**fields)


def test_summary_table_keeps_verdict_rows_apart_from_credits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Report().summary(_summary())
    text = capsys.readouterr().err
    credits = re.search(r"credits spent\s*│\s*(\d+)", text)
    assert credits and credits.group(1) == "5"
    heading = re.search(r"verdicts \(rows\)\s*│\s*(\d+)", text)
    assert heading and heading.group(1) == "12"
    assert text.index("credits spent") < text.index("verdicts (rows)") < text.index("deliverable")


def test_a_simulated_summary_never_says_credits(capsys: pytest.CaptureFixture[str]) -> None:
    summary = _summary()
    summary.simulated = True  # type: ignore[attr-defined]
    Report().summary(summary)
    text = capsys.readouterr().err
    assert "credits spent" not in text
    assert "simulated validations (no credits)" in text

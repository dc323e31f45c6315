"""The commands around `validate`: estimate, status, cancel, mock-server, and the help texts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import (
    FAST_RETRY,
    KEY,
    FakeInThread,
    ManualClock,
    batch_states,
    cli,
    lead_rows,
    read_csv,
    write_leads,
)

import ample_batch
from ample_batch import ApiOptions, ValidateOptions
from ample_batch.cli.main import main
from ample_batch.limits import parse_limit

COMMANDS = ["validate", "estimate", "status", "cancel", "mock-server"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_validate_help_documents_the_contract() -> None:
    text = CliRunner().invoke(main, ["validate", "--help"], terminal_width=200).output
    # One entry per option, its wrapped help joined: "  -o, --output PATH  Output file ..."
    # belongs to each of its names.
    blocks = re.split(r"\n(?=  -)", text.split("Options:", 1)[1])
    lines: dict[str, str] = {}
    for block in blocks:
        joined = " ".join(block.split())
        for name in re.findall(r"(?:^|, )(-{1,2}[\w-]+)", joined):
            lines[name] = joined
    # Each option of design.md's contract, with what its help must say: the default a user
    # relies on, the environment variable it reads, the promise it makes.
    contract = {
        "--output": "format from extension",
        "--email-column": "Column holding the email",
        "--api-key": "[env var: AMPLEMARKET_API_KEY]",
        "--base-url": "[default: https://api.amplemarket.com]",
        "--usage-limit": "[default: 15000/hour; --simulate: unlimited]",
        "--rate-limit": "[default: 500/minute; --simulate: unlimited]",
        "--chunk-size": "min(100000, usage-limit count)",
        "--state-dir": "[env AMPLE_BATCH_HOME]",
        "--cache-ttl": "[default: 30d]",
        "--recheck": "[default: unknown=7d]",
        "--state-url": "[env AMPLE_BATCH_STATE_URL]",
        "--max-runtime": "exit 75",
        "--simulate": "no key, no credits",
        "--summary-json": "JSON",
        "-q": "--quiet",
        "-v": "--verbose",
    }
    for option, says in contract.items():
        assert option in lines, f"{option} is missing from validate --help"
        assert says in lines[option], f"{option}'s help lost {says!r}: {lines[option]!r}"
    assert "never printed, logged or stored" in lines["--api-key"]
    assert "Exits 75 when it stops early" in text


def test_estimate_spends_nothing_and_counts_the_cache(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000, blanks=5, invalid=3))
    state = tmp_path / "s"
    before = cli("estimate", str(src), "--state-dir", str(state), "--json")
    assert before.returncode == 0, before.stderr
    estimate = json.loads(before.stdout)
    assert estimate["rows"] == 1000 + 100 + 8
    assert estimate["unique_emails"] == 1000
    assert (estimate["blank"], estimate["invalid"], estimate["cached"]) == (5, 3, 0)
    assert estimate["credits_needed"] == 1000
    assert estimate["batches"] == 1
    assert not state.exists(), "estimate must not create state"

    with FakeInThread(retry_after=0.1) as fake:
        _validate_in_process(fake, src, state)
    overlap = write_leads(tmp_path / "b.csv", lead_rows(1000, start=600))
    after = json.loads(cli("estimate", str(overlap), "--state-dir", str(state), "--json").stdout)
    assert (after["cached"], after["credits_needed"]) == (400, 600)
    table = cli("estimate", str(overlap), "--state-dir", str(state), "--usage-limit", "100/hour")
    assert "credits needed" in table.stdout and "5.0 h" in table.stdout


def test_status_lists_jobs_and_their_progress(tmp_path: Path) -> None:
    state = tmp_path / "s"
    empty = cli("status", "--state-dir", str(state))
    assert empty.returncode == 0 and "no jobs" in empty.stdout
    src = write_leads(tmp_path / "a.csv", lead_rows(200))
    with FakeInThread(retry_after=0.1) as fake:
        _validate_in_process(fake, src, state)
    jobs = json.loads(cli("status", "--state-dir", str(state), "--json").stdout)
    assert len(jobs) == 1
    assert jobs[0]["job"]["state"] == "done"
    assert jobs[0]["progress"]["resolved"] == 200
    assert jobs[0]["progress"]["pending"] == 0
    job_id = jobs[0]["job"]["id"]
    one = cli("status", job_id[:5], "--state-dir", str(state))
    assert one.returncode == 0 and job_id in one.stdout
    missing = cli("status", "zzzz", "--state-dir", str(state))
    assert missing.returncode == 2 and "no job 'zzzz'" in missing.stderr


def _validate_in_process(fake: FakeInThread, src: Path, state: Path) -> None:
    """What `ample-batch validate SRC --state-dir STATE` does, as the set-up of a test of
    another command: in-process, and polling on FAST_RETRY's schedule (its first poll after
    0.05 s, not 1 s), so it costs no interpreter start and no second of waiting."""
    api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
    assert ample_batch.validate(ValidateOptions(input=src, state_dir=state, api=api)).complete


def _stop_once_charged(
    fake: FakeInThread, args: list[str], charged: int, then: Any = None
) -> tuple[int, str]:
    """Run `ample-batch validate ARGS` until the fake has charged `charged` credits (its batch
    is running), then call `then` and SIGTERM it; its exit code and stderr. A fixed
    --max-runtime instead raced the machine's load: a busy run had not even posted yet."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ample_batch", "validate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AMPLEMARKET_API_KEY": KEY},
    )
    deadline = time.monotonic() + 60
    while fake.summary().credits_spent < charged:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {charged} credits charged: {proc.communicate()[1]}")
        time.sleep(0.05)
    # `then` first: a test that stops the fake's clock stops it before the run's wrap-up.
    if then is not None:
        then()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def test_cancel_keeps_partial_results_and_validate_finishes_the_rest(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    state = tmp_path / "s"
    # Slow processing: when the run stops, the batch is still running on the server (1.8 s of
    # work is left after the 100th email); then the fake's clock stands still so nothing more
    # is processed until the test says so.
    clock = ManualClock(start=0.0, running=True)
    with FakeInThread(retry_after=0.2, emails_per_second=500, clock=clock) as fake:
        base = ["--base-url", fake.url, "--state-dir", str(state)]
        code, stderr = _stop_once_charged(fake, [str(src), *base], 100, then=clock.pause)
        assert code == 75, stderr
        assert [s for s, _ in batch_states(state)] == ["running"]
        job_id = json.loads(cli("status", "--state-dir", str(state), "--json").stdout)[0]["job"][
            "id"
        ]
        canceled = cli("cancel", job_id, "--base-url", fake.url, "--state-dir", str(state))
        assert canceled.returncode == 0, canceled.stderr
        assert "canceled 1 running validation" in canceled.stdout
        kept = json.loads(cli("status", "--state-dir", str(state), "--json").stdout)[0]
        charged = fake.summary().credits_spent
        assert 0 < kept["progress"]["resolved"] == charged < 1000
        # The canceled remainder is pending, not gone: the totals add up to the job.
        assert kept["progress"]["emails"] == 1000
        assert kept["progress"]["pending"] == 1000 - charged
        clock.resume()
        done = cli("validate", str(src), *base)
        assert done.returncode == 0, done.stderr
        assert fake.summary().credits_spent == 1000
        assert fake.summary().emails_charged_twice == 0
    assert all(r["email_result"] != "pending" for r in read_csv(tmp_path / "a.validated.csv"))


def test_api_key_help_warns_that_the_command_line_shows_in_ps() -> None:
    for command in ("validate", "cancel"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        help_text = " ".join(text.split())
        assert "visible to other users in `ps`" in help_text
        assert "Prefer the environment variable" in help_text


def test_cancel_keeps_the_given_request_limit_on_the_shared_ledger(tmp_path: Path) -> None:
    # cancel used to apply 500/minute to the key's shared ledger whatever the account's limit:
    # its PATCH and page fetches then burst past a lower limit (429s). Now it takes the same
    # --rate-limit and --usage-limit as validate.
    src = write_leads(tmp_path / "a.csv", lead_rows(1000))
    state = tmp_path / "s"
    # The account allows 3 requests a second; the runs are told 2, so a request delayed by a
    # busy machine between its slot and the wire cannot make a 429 on its own. (The ledger
    # stamps a request at its answer, so the window's length does not change that margin.)
    fake_limit = parse_limit("3/1s")
    # Slow enough that the batch is still running when cancel comes, 7 s after the 300th email
    # (the fake's clock cannot be paused here: its rate-limit window would stand still too).
    with FakeInThread(retry_after=0.2, emails_per_second=100, rate_limit=fake_limit) as fake:
        base = ["--base-url", fake.url, "--state-dir", str(state), "--rate-limit", "2/1s"]
        code, stderr = _stop_once_charged(fake, [str(src), *base], 300)
        assert code == 75, stderr
        job_id = json.loads(cli("status", "--state-dir", str(state), "--json").stdout)[0]["job"][
            "id"
        ]
        canceled = cli("cancel", job_id, *base, "--usage-limit", "15000/hour")
        assert canceled.returncode == 0, canceled.stderr
        assert "canceled 1 running validation" in canceled.stdout
        assert canceled.stderr == ""
        pages = json.loads(cli("status", "--state-dir", str(state), "--json").stdout)[0]
        assert pages["progress"]["resolved"] >= 300, "several result pages to fetch"
        summary = fake.summary()
        assert summary.rate_limited == 0
        assert summary.peak_requests_in_window <= 3


def test_mock_server_help_documents_every_switch() -> None:
    text = CliRunner().invoke(main, ["mock-server", "--help"], terminal_width=200).output
    for switch in [
        "--port",
        "--api-key",
        "--rate-limit",
        "--usage-limit",
        "--credits",
        "--fail-5xx",
        "--drop",
        "--spurious-429",
        "--batch-error",
        "--latency",
        "--retry-after",
    ]:
        assert switch in text


def test_status_and_estimate_see_a_trial_with_simulate(tmp_path: Path) -> None:
    state = tmp_path / "s"
    src = write_leads(tmp_path / "a.csv", lead_rows(20))
    # Set up in this process (as `validate --simulate` would): no interpreter start.
    assert ample_batch.validate(src, simulate=True, state_dir=state).complete
    real = cli("status", "--state-dir", str(state))
    assert (real.returncode, real.stderr) == (0, "")
    assert real.stdout == (
        f"state dir: {state}\nno jobs in this state dir (1 simulated job: add --simulate)\n"
    )
    assert cli("status", "--state-dir", str(state), "--json").stdout == "[]\n"  # data, no hint
    trial = cli("status", "--state-dir", str(state), "--simulate")
    assert trial.returncode == 0, trial.stderr
    assert trial.stdout.startswith(f"state dir: {state / 'simulated'}\n")
    [job] = json.loads(cli("status", "--state-dir", str(state), "--simulate", "--json").stdout)
    assert job["job"]["state"] == "done" and job["job"]["id"] in trial.stdout
    in_trial = cli("status", job["job"]["id"][:6], "--state-dir", str(state))
    assert in_trial.returncode == 2
    assert in_trial.stderr == (
        f"ample-batch: no job {job['job']['id'][:6]!r}: the state {state} holds no jobs "
        "(1 simulated job: add --simulate)\n"
    )
    missing = cli("status", "zzzz", "--state-dir", str(state), "--simulate")
    assert missing.returncode == 2 and missing.stderr.startswith("ample-batch: no job 'zzzz'")
    assert "see `ample-batch status`" in missing.stderr  # the CLI's words, not Python's

    # A trial's estimate counts the trial's cache; the real one is still to pay for.
    estimate = ["estimate", str(src), "--state-dir", str(state), "--json"]
    counted = json.loads(cli(*estimate, "--simulate").stdout)
    assert (counted["already_done"], counted["credits_needed"]) == (20, 0)
    assert json.loads(cli(*estimate).stdout)["credits_needed"] == 20

    other = write_leads(tmp_path / "b.csv", lead_rows(5, start=500))
    assert ample_batch.validate(other, simulate=True, state_dir=state).complete
    two = cli("status", "--state-dir", str(state))
    assert two.stdout.endswith("no jobs in this state dir (2 simulated jobs: add --simulate)\n")


def test_the_command_line_keeps_its_own_words(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "a.csv", lead_rows(3))
    state = ["--state-dir", str(tmp_path / "s")]
    keyless = cli("validate", str(src), *state, env={"AMPLEMARKET_API_KEY": ""})
    assert keyless.returncode == 2
    assert keyless.stderr == (
        "ample-batch: no API key: set AMPLEMARKET_API_KEY or pass --api-key (or try --simulate)\n"
    )
    chunk = cli("estimate", str(src), *state, "--chunk-size", "0")
    assert (chunk.returncode, chunk.stderr) == (2, "ample-batch: --chunk-size must be at least 1\n")


def test_cancel_of_a_finished_job_leaves_it_done(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(3))
    state = str(tmp_path / "s")
    assert cli("validate", str(src), "--simulate", "-q", "--state-dir", state).returncode == 0
    (before,) = json.loads(cli("status", "--simulate", "--json", "--state-dir", state).stdout)
    done = cli("cancel", before["job"]["id"][:8], "--simulate", "--state-dir", state)
    assert done.returncode == 0, done.stderr
    assert "canceled 0 running validation(s)" in done.stdout
    (after,) = json.loads(cli("status", "--simulate", "--json", "--state-dir", state).stdout)
    assert after["job"]["state"] == "done" and after["progress"] == before["progress"]

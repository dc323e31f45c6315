"""`--simulate` is a trial: its own store, the fake's own limits, and never touches real state.

The real runs here go to a fake served in a thread with its own key and its own seed, so
verdicts made up by the simulation are told apart from the real fake's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import KEY, FakeInThread, cli, lead_rows, read_csv, write_leads

from ample_batch.errors import InsufficientCredits
from ample_batch.fake.config import verdict_for
from ample_batch.limits import Limit
from ample_batch.options import ApiOptions, ValidateOptions
from ample_batch.pipeline.prepare import state_of
from ample_batch.pipeline.validate import validate

REAL_SEED = 7  # the simulation's fake uses seed 0: most verdicts differ between the two
FAST = {"retry_after": 0.1, "emails_per_second": 50000, "seed": REAL_SEED}


def _real(fake: FakeInThread, src: Path, state: Path, **kw: object) -> ValidateOptions:
    api = ApiOptions(api_key=KEY, base_url=fake.url, usage_limit=Limit(100_000, 3600.0))
    return ValidateOptions(input=src, state_dir=state, api=api, **kw)  # type: ignore[arg-type]


def _simulated(src: Path, state: Path, **kw: object) -> ValidateOptions:
    return ValidateOptions(input=src, state_dir=state, api=ApiOptions(simulate=True), **kw)  # type: ignore[arg-type]


def _dump(path: Path) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mismatches(out: Path, seed: int) -> int:
    """Output rows whose verdict is not the fake with `seed`'s."""
    wrong = 0
    for row in read_csv(out):
        result, catch_all = verdict_for(row["Email"].strip().lower(), seed)
        if (row["email_result"], row["email_catch_all"]) != (result, str(catch_all).lower()):
            wrong += 1
    return wrong


def test_a_real_run_after_a_simulated_one_pays_for_and_gets_real_verdicts(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    state = tmp_path / "state"
    trial = validate(_simulated(src, state))
    assert trial.complete and trial.simulated
    assert trial.as_dict()["simulated"] is True
    with FakeInThread(**FAST) as fake:
        real = validate(_real(fake, src, state))
        assert real.complete and not real.simulated
        assert fake.summary().credits_spent == 400
        assert real.credits_spent == 400 and real.cached == 0
    assert _mismatches(tmp_path / "leads.validated.csv", REAL_SEED) == 0
    # And the trial's store is its own, under the state dir.
    assert (state / "simulated" / "ample-batch.sqlite").exists()


def test_a_simulated_run_leaves_a_half_done_real_job_exactly_as_it_was(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(500))
    state = tmp_path / "state"
    with FakeInThread(**FAST, credits=200) as fake:
        with pytest.raises(InsufficientCredits):
            validate(_real(fake, src, state, chunk_size=100))
        spent = fake.summary().credits_spent
    assert 0 < spent < 500
    ledgers = sorted(state.glob("ledger-*.sqlite"))
    assert ledgers
    before = (_dump(state / "ample-batch.sqlite"), [_digest(p) for p in ledgers])
    trial = validate(_simulated(src, state))
    assert trial.complete and trial.simulated
    after = (_dump(state / "ample-batch.sqlite"), [_digest(p) for p in ledgers])
    assert after == before
    assert sorted(state.glob("ledger-*.sqlite")) == ledgers
    # The real job resumes where it stopped: it pays only for what it had not bought.
    with FakeInThread(**FAST) as fake:
        real = validate(_real(fake, src, state, chunk_size=100))
        assert real.complete
        assert fake.summary().credits_spent == 500 - spent
    assert _mismatches(tmp_path / "leads.validated.csv", REAL_SEED) == 0


def test_a_30000_row_trial_finishes_in_seconds_with_default_limits(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(30_000))
    summary_path = tmp_path / "summary.json"
    started = time.monotonic()
    args = ["validate", str(src), "--simulate", "--state-dir", str(tmp_path / "s"), "-q"]
    # --max-runtime turns the old hour-long wait for quota into a quick, failing exit 75.
    done = cli(*args, "--max-runtime", "60", "--summary-json", str(summary_path))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] and summary["simulated"]
    assert summary["unique_emails"] == 30_000


def test_limits_default_by_mode_and_the_state_dir_for_a_simulation(tmp_path) -> None:
    real, trial = ApiOptions(), ApiOptions(simulate=True)
    assert (real.resolved_usage_limit, real.resolved_rate_limit) == (
        Limit(15000, 3600.0),
        Limit(500, 60.0),
    )
    assert trial.resolved_usage_limit.count >= 1_000_000
    assert trial.resolved_rate_limit.count >= 100_000
    given = ApiOptions(simulate=True, usage_limit=Limit(10, 1.0), rate_limit=Limit(5, 1.0))
    assert (given.resolved_usage_limit, given.resolved_rate_limit) == (
        Limit(10, 1.0),
        Limit(5, 1.0),
    )
    assert state_of(real, tmp_path).dir == tmp_path
    assert state_of(trial, tmp_path).dir == tmp_path / "simulated"


def test_the_cli_help_shows_the_limit_defaults_by_mode() -> None:
    done = cli("validate", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "15000/hour; --simulate: unlimited" in text
    assert "500/minute; --simulate: unlimited" in text


def test_a_trials_output_is_never_taken_for_a_real_jobs(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(300))
    state = tmp_path / "state"
    trial = validate(_simulated(src, state))
    assert any("made up" in warning for warning in trial.warnings)
    # The real job stops half-way: the trial's file is still there, and the run says whose.
    with FakeInThread(**FAST, credits=100) as fake, pytest.raises(InsufficientCredits) as stopped:
        validate(_real(fake, src, state, chunk_size=100))
    summary = stopped.value.summary  # type: ignore[attr-defined]
    assert summary.output.endswith("leads.validated.partial.csv")
    assert any("is not this job's result" in warning for warning in summary.warnings)


def _batch_states(state: Path) -> list[str]:
    db = sqlite3.connect(f"file:{state / 'simulated' / 'ample-batch.sqlite'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT state FROM batches ORDER BY id")]
    finally:
        db.close()


def _stopped_with_a_batch_in_flight(src: Path, state: Path) -> list[str]:
    """A trial run that stops with a batch in flight; its `validate` arguments."""
    args = ["validate", str(src), "--simulate", "--state-dir", str(state), "-q"]
    # The key check and the first POST take the only two requests of the minute: the run
    # stops at its deadline before the batch's first poll; its fake dies with the process.
    limits = ("--usage-limit", "100/60s", "--rate-limit", "2/60s", "--max-runtime", "3s")
    stopped = cli(*args, *limits)
    assert stopped.returncode == 75, stopped.stderr
    assert "running" in _batch_states(state)
    return args


def test_a_trial_stopped_with_a_batch_in_flight_resumes_in_seconds(tmp_path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(300))
    state, summary_path = tmp_path / "s", tmp_path / "summary.json"
    args = _stopped_with_a_batch_in_flight(src, state)
    started = time.monotonic()
    # Once the old "404s must last 10 minutes" rule held this rerun for 10 minutes.
    done = cli(*args, "--usage-limit", "100000/1s", "--summary-json", str(summary_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] and summary["possible_double_charges"] == 0
    assert any("sent again" in warning for warning in summary["warnings"])
    assert "pending" not in {
        row["email_result"] for row in read_csv(tmp_path / "leads.validated.csv")
    }
    assert "running" not in _batch_states(state)


def test_stopped_always_has_a_summary_none_before_the_engine(tmp_path) -> None:
    import ample_batch
    from ample_batch.errors import JobLockLost, OutputUnwritten, StateUnavailable, Stopped

    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with pytest.raises(Stopped) as early:
        ample_batch.validate(str(src), simulate=True, max_runtime="0s", state_dir=tmp_path / "s")
    assert early.value.summary is None
    with pytest.raises(Stopped) as late:
        ample_batch.validate(
            str(src),
            simulate=True,
            usage_limit="10/60s",
            max_runtime="5s",
            state_dir=tmp_path / "s",
        )
    assert late.value.summary is not None and late.value.summary.remaining > 0
    for stop in (StateUnavailable("x"), JobLockLost("x"), OutputUnwritten("x")):
        assert stop.summary is None
    assert InsufficientCredits("x").summary is None


def test_cancel_of_a_trial_whose_batch_died_with_its_run_puts_it_back_in_the_plan(
    tmp_path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(300))
    state = tmp_path / "s"
    args = _stopped_with_a_batch_in_flight(src, state)
    db = sqlite3.connect(f"file:{state / 'simulated' / 'ample-batch.sqlite'}?mode=ro", uri=True)
    with contextlib.closing(db):
        (job,) = [row[0] for row in db.execute("SELECT id FROM jobs")]
    # Nothing to cancel at the simulated API (it never saw the batch), and nothing paid.
    canceled = cli("cancel", job, "--simulate", "--state-dir", str(state))
    assert canceled.returncode == 0, canceled.stderr
    assert "running" not in _batch_states(state)
    assert cli(*args).returncode == 0
    assert "pending" not in {
        row["email_result"] for row in read_csv(tmp_path / "leads.validated.csv")
    }

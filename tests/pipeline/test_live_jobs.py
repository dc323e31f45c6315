"""Issue 11, 8: a job a live process runs, as `status`, a second `validate` and `cancel` see it.

Two processes each time: the run, against the fake API with slow processing, and the
command under test.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from cli_backends import StateBackend
from helpers import (
    FakeInThread,
    batch_states,
    cli,
    lead_rows,
    popen_cli,
    read_csv,
    wait_until,
    write_leads,
)

# 400 emails take 20 s to process: time for the other process to act on a loaded machine.
SLOW = {"retry_after": 0.2, "emails_per_second": 20}


def _running(state: Path) -> bool:
    return "running" in [s for s, _ in batch_states(state)]


def _status(state: Path) -> list[dict]:
    done = cli("status", "--state-dir", str(state), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_shows_a_live_run_and_a_busy_job_is_refused_first(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    state = tmp_path / "state"
    out = tmp_path / "first.csv"
    with FakeInThread(**SLOW) as fake:
        run = popen_cli("validate", str(src), "-o", str(out), "--base-url", fake.url,
                     "--state-dir", str(state), "--usage-limit", "1000/2s")  # fmt: skip
        try:
            wait_until(lambda: _running(state))
            (job,) = _status(state)
            assert job["job"]["state"] == "running"
            assert job["pid"] == run.pid
            assert job["job"]["output_path"] == str(out)
            assert job["eta"] is not None and job["eta"] >= time.time() - 1
            assert job["state_dir"] == str(state)
            table = cli("status", "--state-dir", str(state))
            assert f"running in process {run.pid}" in table.stdout
            assert str(state) in table.stdout

            # A second run of the same job, with a wrong key: refused as busy (exit 75)
            # before the key is checked (which would be exit 3) or the file scanned.
            second = cli("validate", str(src), "-o", str(tmp_path / "second.csv"),
                         "--base-url", fake.url, "--state-dir", str(state),
                         env={"AMPLEMARKET_API_KEY": "wrong-key"})  # fmt: skip
            assert second.returncode == 75, second.stderr
            assert "already running in another process" in second.stderr
            assert f"process {run.pid}" in second.stderr
            (job,) = _status(state)
            assert job["job"]["output_path"] == str(out)
            # The wrong key never reached the API.
            assert fake.summary().requests_by_status.get(401, 0) == 0
        finally:
            run.send_signal(signal.SIGTERM)
            run.communicate(timeout=60)
    (job,) = _status(state)
    assert job["pid"] is None
    assert job["job"]["state"] in ("partial", "done")


def test_cancel_stops_a_live_run_and_status_tells_the_truth(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    state = tmp_path / "state"
    with FakeInThread(**SLOW) as fake:
        run = popen_cli("validate", str(src), "--base-url", fake.url, "--state-dir", str(state),
                     "--usage-limit", "1000/2s")  # fmt: skip
        wait_until(lambda: _running(state))
        time.sleep(1.0)  # some of the batch processed, most not
        (job,) = _status(state)
        canceled = cli("cancel", job["job"]["id"], "--base-url", fake.url,
                       "--state-dir", str(state))  # fmt: skip
        assert canceled.returncode == 0, canceled.stderr
        assert "canceled 1 running validation" in canceled.stdout
        _out, err = run.communicate(timeout=60)
        assert run.returncode == 75, err
        spent = fake.summary().credits_spent
    (job,) = _status(state)
    assert job["job"]["state"] == "canceled"
    assert job["pid"] is None
    # True counts: what the server processed (and charged) before the cancel is validated;
    # the rest is given back, pending, for the next run to buy.
    assert 0 < job["progress"]["resolved"] == spent < 400
    assert job["progress"]["emails"] == 400
    assert job["progress"]["pending"] == 400 - spent
    partial = read_csv(tmp_path / "leads.validated.partial.csv")
    validated = {r["Email"].strip().lower() for r in partial if r["email_result"] != "pending"}
    assert len(validated) == spent


def test_a_killed_run_shows_as_stopped_with_its_progress(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    # status once showed `new` for a job with batches in flight: the state was only ever
    # written by a run that lived to its end. Now a run records `running` as it starts
    # buying, and a `running` job that no live run holds shows as `stopped`.
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    state = tmp_path / "state"
    args = ["--state-dir", str(state), *state_backend.args]
    with FakeInThread(**SLOW) as fake:
        run = popen_cli("validate", str(src), "--base-url", fake.url, *args,
                        "--usage-limit", "1000/2s")  # fmt: skip
        try:
            wait_until(lambda: "running" in [s for s, _ in state_backend.batch_states(state)])
            (live,) = _json_status(args)
            assert (live["job"]["state"], live["pid"]) == ("running", run.pid)
        finally:
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=60)
    (job,) = _json_status(args)
    assert (job["job"]["state"], job["pid"]) == ("stopped", None)
    assert job["progress"]["emails"] == 400
    assert job["progress"]["batches"] == {"running": 1}
    table = cli("status", *args)
    assert table.returncode == 0, table.stderr
    assert " stopped " in table.stdout


def _json_status(args: list[str]) -> list[dict]:
    done = cli("status", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_second_interrupt_during_the_final_write_leaves_no_temp_file(tmp_path: Path) -> None:
    # Wide rows, so the final write takes a while.
    rows = [{**row, "notes": "x" * 4000} for row in lead_rows(20000)]
    src = write_leads(tmp_path / "leads.csv", rows)
    state = tmp_path / "state"
    run = popen_cli("validate", str(src), "--simulate", "--state-dir", str(state),
                 "--usage-limit", "100000/1s")  # fmt: skip

    def temp_files() -> list[Path]:
        return list(tmp_path.glob(".leads.validated*.tmp"))

    wait_until(temp_files, timeout=120)
    run.send_signal(signal.SIGINT)
    time.sleep(0.1)  # two signals at once would reach the process as one
    assert temp_files(), "the write ended before the second interrupt: make it longer"
    run.send_signal(signal.SIGINT)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 75, err
    assert "interrupted twice" in err
    assert temp_files() == []

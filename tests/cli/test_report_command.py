"""`validate --report PATH.html` and `ample-batch report [JOB] -o PATH.html`: the real command
against the fake API over loopback; every figure on the page equals the --summary-json's, for
a finished job (on both state backends) and for one stopped early; bad ids and paths are one
line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_backends import StateBackend
from helpers import FAST_RETRY, KEY, FakeInThread, cli, lead_rows, write_leads
from postgres_server import PASSWORD
from report_page import assert_matches_summary, assert_self_contained, read_report

import ample_batch
from ample_batch import ApiOptions, ValidateOptions


def _validate(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_validate_report_and_the_report_command_show_the_summary(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(1500, blanks=5, invalid=2))
    state, summary, page = tmp_path / "s", tmp_path / "s.json", tmp_path / "run.html"
    with FakeInThread(retry_after=0.1, emails_per_second=50000) as fake:
        done = cli(*_validate(fake, src, state, "--report", str(page), "--summary-json",
                              str(summary), "--usage-limit", "1000/1s",
                              *state_backend.args))  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = _json(summary)
    assert data["report"] == str(page) and data["usage_limit"] == "1000/1s"
    first = read_report(page)
    assert_self_contained(first)
    assert_matches_summary(first, data)
    assert first.figures["submitted"] == data["credits_spent"] == 1500
    assert first.figures["limit_per_hour"] == 3_600_000
    assert KEY not in first.text

    # Later, from the state alone: the most recent job, and the same job by its id prefix.
    # PostgreSQL: the URL from the environment once, and once as --state-url.
    env = {"AMPLE_BATCH_STATE_URL": state_backend.url} if state_backend.url else None
    for job in ([], [data["job"][:4]]):
        again = tmp_path / f"again{len(job)}.html"
        given = state_backend.args if job else []
        made = cli("report", *job, "-o", str(again), "--state-dir", str(state), *given, env=env)
        assert made.returncode == 0, made.stderr
        assert made.stdout == f"wrote the report of job {data['job']} to {again}\n"
        later = read_report(again)
        assert_self_contained(later)
        assert_matches_summary(later, data)
        assert (later.undeliverable, later.catch_all) == (first.undeliverable, first.catch_all)
        assert later.hour_bars == first.hour_bars
        assert later.figures["limit_per_hour"] == 3_600_000
        if state_backend.url:
            assert PASSWORD not in later.text and PASSWORD not in made.stdout + made.stderr
    if state_backend.url:
        assert not state.exists(), "with --state-url nothing is written under --state-dir"


def test_a_schema_too_long_for_a_simulated_twin_is_still_just_empty(
    tmp_path: Path, pg_url: str
) -> None:
    # The "(or add --simulate ...)" hint looks for the simulated twin: no error of its own.
    schema = "s" * 55
    done = cli("report", "-o", str(tmp_path / "r.html"), "--state-url", pg_url,
               "--state-schema", schema, "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ample-batch: no jobs in the state database postgresql://")
    assert f"(schema {schema})" in done.stderr and "--simulate" not in done.stderr


def test_the_report_of_a_state_database_without_jobs_is_one_line_exit_2(
    tmp_path: Path, pg_url: str
) -> None:
    done = cli("report", "-o", str(tmp_path / "r.html"), "--state-url", pg_url,
               "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ample-batch: no jobs in the state database postgresql://")
    assert "(schema ample_batch)" in done.stderr and PASSWORD not in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "s").exists() and not (tmp_path / "r.html").exists()


def test_a_stopped_job_reports_partial_progress(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(1000))
    state, summary, page = tmp_path / "s", tmp_path / "s.json", tmp_path / "run.html"
    with FakeInThread(retry_after=0.2, emails_per_second=200) as fake:
        stopped = cli(*_validate(fake, src, state, "--max-runtime", "1s", "--report", str(page),
                                 "--summary-json", str(summary)))  # fmt: skip
    assert stopped.returncode == 75, stopped.stderr
    data = _json(summary)
    assert data["complete"] is False and data["remaining"] > 0 and data["report"] == str(page)
    for path in (page, tmp_path / "later.html"):
        if path != page:
            made = cli("report", data["job"], "-o", str(path), "--state-dir", str(state))
            assert made.returncode == 0, made.stderr
        shown = read_report(path)
        assert_self_contained(shown)
        assert shown.banners == ["partial"]
        assert_matches_summary(shown, data)
        assert shown.figures["remaining"] == data["remaining"]


def test_a_simulated_job_is_found_with_simulate(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    state = ["--state-dir", str(tmp_path / "s"), *state_backend.args]
    assert cli("validate", str(src), "--simulate", *state, "-q").returncode == 0
    page = tmp_path / "r.html"
    real = cli("report", "-o", str(page), *state)
    assert real.returncode == 2 and "no jobs" in real.stderr and "add --simulate" in real.stderr
    made = cli("report", "-o", str(page), *state, "--simulate")
    assert made.returncode == 0, made.stderr
    assert read_report(page).banners == ["simulated"]
    assert (tmp_path / "s").exists() is (state_backend.url is None)


@pytest.fixture(scope="module")
def finished_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dir holding one finished job, shared by the tests that only read it: the job
    is set up in-process (the `report` command under test runs as a subprocess)."""
    root = tmp_path_factory.mktemp("finished")
    src = write_leads(root / "leads.csv", lead_rows(20))
    with FakeInThread(retry_after=0.1) as fake:
        api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
        options = ValidateOptions(input=src, state_dir=root / "s", api=api)
        assert ample_batch.validate(options).complete
    return root / "s"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zzzz", "-o", "r.html"], "ample-batch: no job 'zzzz': see `ample-batch status`"),
        (["-o", "r.csv"], "ample-batch: -o r.csv: give a file name ending in .html"),
        (["--output", "r.csv"], "ample-batch: --output r.csv: give a file name ending in .html"),
        (["--output=r.csv"], "ample-batch: --output r.csv: give a file name ending in .html"),
        (["-or.csv"], "ample-batch: -o r.csv: give a file name ending in .html"),
        (["-o", "nowhere/r.html"], "ample-batch: -o nowhere/r.html: no directory"),
        ([], "ample-batch: Missing option '-o' / '--output'."),
    ],
    ids=[
        "bad-id",
        "not-html",
        "not-html-long",
        "not-html-equals",
        "not-html-attached",
        "no-directory",
        "no-output",
    ],  # the message names the option as it was typed
)
def test_bad_report_arguments_are_one_line_exit_2(
    tmp_path: Path, finished_state: Path, args: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ample_batch", "report", *args, "--state-dir", str(finished_state)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.csv").exists()


def test_no_jobs_yet_is_one_line_exit_2(tmp_path: Path) -> None:
    done = cli("report", "-o", str(tmp_path / "r.html"), "--state-dir", str(tmp_path / "empty"))
    assert done.returncode == 2
    assert done.stderr.startswith("ample-batch: no jobs in the state dir ")
    assert len(done.stderr.splitlines()) == 1


def test_validate_refuses_a_bad_report_path_before_anything_is_spent(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(retry_after=0.1) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "--report", str(src)))
        assert fake.summary().requests == 0
    assert done.returncode == 2
    assert "give a file name ending in .html" in done.stderr
    assert src.read_text().startswith("id,name,Email")  # the lead list is untouched


PROBE = """
import json, sys
from ample_batch.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("aiohttp", "pyarrow", "polars"))), file=sys.stderr)
"""


def test_the_report_command_loads_nothing_heavy(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    state = tmp_path / "s"
    assert cli("validate", str(src), "--simulate", "--state-dir", str(state), "-q").returncode == 0
    for args in (["report", "--help"], ["report", "-o", str(tmp_path / "r.html"), "--simulate"]):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args, "--state-dir", str(state)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert json.loads(done.stderr.strip().splitlines()[-1]) == [], args
    assert (tmp_path / "r.html").exists()

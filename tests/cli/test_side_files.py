"""No file a run writes may replace the input, another of its files or the state: the real
command refuses `--summary-json`, `--report`, `-o` (and the files named after it) on such a
path with one line and exit 2, before any request, leaving every byte as it was."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import FAST_RETRY, KEY, FakeInThread, cli, lead_rows, write_leads

import ample_batch
from ample_batch import ApiOptions, ValidateOptions

STATE_DB = "s/ample-batch.sqlite"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In `tmp_path`, now the working dir: `victim.csv`, its finished output
    `victim.validated.csv` and the state dir `s` of that job (run in-process)."""
    monkeypatch.chdir(tmp_path)
    src = write_leads(tmp_path / "victim.csv", lead_rows(30))
    with FakeInThread(retry_after=0.1) as fake:
        api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
        assert ample_batch.validate(
            ValidateOptions(input=src, state_dir=Path("s"), api=api)
        ).complete
    (tmp_path / "elsewhere").mkdir()
    os.link(tmp_path / STATE_DB, tmp_path / "elsewhere" / "linked.sqlite")
    os.symlink(tmp_path / "victim.csv", tmp_path / "elsewhere" / "alias.csv")
    return tmp_path


CASES = {
    # name: (extra arguments, the one line on stderr)
    "input": (
        ["--summary-json", "victim.csv"],
        "--summary-json victim.csv: is the input file victim.csv; choose another --summary-json",
    ),
    "input-by-symlink": (
        ["--summary-json", "elsewhere/alias.csv"],
        "--summary-json elsewhere/alias.csv: is the input file victim.csv; "
        "choose another --summary-json",
    ),
    "input-by-dotdot": (
        ["--summary-json", "elsewhere/../victim.csv"],
        "--summary-json elsewhere/../victim.csv: is the input file victim.csv; "
        "choose another --summary-json",
    ),
    "output": (
        ["--summary-json", "victim.validated.csv"],
        "--summary-json victim.validated.csv: is also the output victim.validated.csv; "
        "choose another --summary-json",
    ),
    "output-given": (
        ["-o", "out.csv", "--summary-json", "./out.csv"],
        "--summary-json out.csv: is also -o out.csv; choose another --summary-json",
    ),
    "partial-output": (
        ["--summary-json", "victim.validated.partial.csv"],
        "--summary-json victim.validated.partial.csv: is also the partial output "
        "victim.validated.partial.csv; choose another --summary-json",
    ),
    "split-file": (
        ["--split", "--summary-json", "victim.validated.risky.csv"],
        "--summary-json victim.validated.risky.csv: is also --split's risky file "
        "victim.validated.risky.csv; choose another --summary-json",
    ),
    "report": (
        ["--report", "r.html", "--summary-json", "r.html"],
        "--summary-json r.html: is also --report r.html; choose another --summary-json",
    ),
    "state-db": (
        ["--summary-json", STATE_DB],
        f"--summary-json {STATE_DB}: is one of the state's own files, in the state dir s; "
        "choose another --summary-json",
    ),
    "state-db-by-hard-link": (
        ["--summary-json", "elsewhere/linked.sqlite"],
        "--summary-json elsewhere/linked.sqlite: is the same file as "
        f"{STATE_DB}, in the state dir; choose another --summary-json",
    ),
    "in-the-locks": (
        ["--summary-json", "s/locks/run.json"],
        "--summary-json s/locks/run.json: is one of the state's own files, in the state dir s; "
        "choose another --summary-json",
    ),
    "report-in-the-locks": (
        ["--report", "s/locks/r.html"],
        "--report s/locks/r.html: is one of the state's own files, in the state dir s; "
        "choose another --report",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_side_file_over_the_input_the_output_or_the_state_is_refused(
    finished: Path, case: str
) -> None:
    extra, message = CASES[case]
    files = ["victim.csv", "victim.validated.csv", STATE_DB]
    before = {name: _digest(finished / name) for name in files}
    listing = sorted(str(p.relative_to(finished)) for p in finished.rglob("*"))
    with FakeInThread(retry_after=0.1) as fake:
        done = cli("validate", "victim.csv", "--base-url", fake.url, "--state-dir", "s", *extra)
        assert fake.summary().requests == 0, "not even the key check may go out"
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"ample-batch: {message}\n"
    assert {name: _digest(finished / name) for name in files} == before
    after = sorted(str(p.relative_to(finished)) for p in finished.rglob("*"))
    assert after == listing, "nothing is written, in the state dir or beside the input"


def test_the_state_db_of_a_simulation_is_refused_and_stays_readable(finished: Path) -> None:
    simulate = ["validate", "victim.csv", "--simulate", "-q", "--state-dir", "s"]
    assert cli(*simulate).returncode == 0
    db = finished / "s" / "simulated" / "ample-batch.sqlite"
    before = _digest(db)
    done = cli(*simulate, "--summary-json", "s/simulated/ample-batch.sqlite")
    assert done.returncode == 2
    assert done.stderr == (
        "ample-batch: --summary-json s/simulated/ample-batch.sqlite: is one of the state's own "
        "files, in the state dir s; choose another --summary-json\n"
    )
    assert _digest(db) == before
    again = cli(*simulate, "--summary-json", "run.json")
    assert again.returncode == 0, again.stderr  # the database is whole: the next run works
    assert (finished / "run.json").read_text().startswith("{")


def test_an_output_whose_partial_twin_is_the_input_is_refused(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.partial.csv", lead_rows(20))
    before = _digest(src)
    with FakeInThread(retry_after=0.1) as fake:
        done = cli(
            "validate", str(src), "-o", str(tmp_path / "leads.csv"), "--base-url", fake.url,
            "--state-dir", str(tmp_path / "s"),
        )  # fmt: skip
        assert fake.summary().requests == 0
    assert done.returncode == 2
    assert done.stderr == (
        f"ample-batch: the partial output {src}: is the input file {src}; choose another -o\n"
    )
    assert _digest(src) == before and not (tmp_path / "leads.csv").exists()


def test_a_summary_refused_once_the_input_is_read_is_not_written(tmp_path: Path) -> None:
    """`--sheet West` names the output only once the workbook is read: a summary on that
    output is refused then, and the run's exit-2 summary does not go there either."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "East"
    book.active.append(["name", "email"])
    book.active.append(["Bo", "bo@acme.com"])
    west = book.create_sheet("West")
    west.append(["name", "email"])
    west.append(["Ana", "ana@acme.com"])
    book.save(tmp_path / "regions.xlsx")
    previous = tmp_path / "regions.West.validated.xlsx"
    previous.write_bytes(b"an earlier output")
    done = cli(
        "validate", str(tmp_path / "regions.xlsx"), "--sheet", "West", "--simulate",
        "--state-dir", str(tmp_path / "s"), "--summary-json", str(previous),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"ample-batch: --summary-json {previous}: is also the output {previous}; "
        "choose another --summary-json\n"
    )
    assert previous.read_bytes() == b"an earlier output"


def test_report_refuses_a_page_among_the_states_files(finished: Path) -> None:
    before = _digest(finished / STATE_DB)
    for option in ("-o", "--output"):
        done = cli("report", option, "s/locks/r.html", "--state-dir", "s")
        assert done.returncode == 2
        assert done.stderr == (
            f"ample-batch: {option} s/locks/r.html: is one of the state's own files, in the "
            f"state dir s; choose another {option}\n"
        )
    assert not (finished / "s" / "locks" / "r.html").exists()
    assert _digest(finished / STATE_DB) == before
    assert cli("report", "-o", "r.html", "--state-dir", "s").returncode == 0


def test_a_run_may_keep_its_output_and_summary_beside_its_state(tmp_path: Path) -> None:
    # A cron job with one working dir: state, output and summary together, the input elsewhere.
    (tmp_path / "in").mkdir()
    src = write_leads(tmp_path / "in" / "leads.csv", lead_rows(5))
    work = tmp_path / "work"
    work.mkdir()
    with FakeInThread(retry_after=0.1) as fake:
        done = cli(
            "validate", str(src), "--base-url", fake.url, "--state-dir", str(work), "-q",
            "-o", str(work / "out.csv"), "--summary-json", str(work / "summary.json"),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "summary.json").read_text())["complete"] is True
    assert (work / "out.csv").exists()

"""`validate` on a workbook whose leads are not on the first sheet, end to end against the
fake API: the sheet is found and said, the output keeps the other sheets; a workbook without
an email column anywhere is refused in one line naming `--sheet NAME` and the sheets; two
sheets of one workbook are two jobs (on both state backends)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cli_backends import StateBackend
from helpers import DATA, FakeInThread, cli, expected_result
from openpyxl import load_workbook

from ample_batch import pg
from ample_batch.jobs.records import job_id_for

FAST = {"retry_after": 0.1, "emails_per_second": 50000}


def _validate(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def test_a_summary_sheet_before_the_leads(tmp_path: Path) -> None:
    src = tmp_path / "campaign.xlsx"
    shutil.copy(DATA / "summary_first.xlsx", src)
    with FakeInThread(**FAST) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "--sent-column"))
        charged = fake.summary().credits_spent
    assert done.returncode == 0, done.stderr
    assert charged == 2
    assert (
        "warning: read sheet 'Leads': the first sheet, 'Summary', has no email column"
        in done.stderr
    )
    book = load_workbook(tmp_path / "campaign.validated.xlsx")
    assert book.sheetnames == ["Summary", "Leads", "Notes"]
    rows = [[c.value for c in row] for row in book["Leads"].iter_rows()]
    assert rows[0][-3:] == ["email_result", "email_catch_all", "email_sent"]
    assert [(r[-3], r[-1]) for r in rows[1:]] == [
        (expected_result("nria@globex.io")[0], "nria@globex.io"),
        (expected_result("max@example.com")[0], "max@example.com"),
        ("no_email", None),
    ]


def test_a_sheet_given_for_a_file_that_is_no_workbook_is_refused(tmp_path: Path) -> None:
    # A --sheet on a CSV most often means the wrong file was given: nothing is spent on it.
    with FakeInThread(**FAST) as fake:
        for name in ("quoted.csv", "nulls.parquet"):
            done = cli(*_validate(fake, DATA / name, tmp_path / "s"), "--sheet", "Leads")
            assert done.returncode == 2
            kind = "CSV" if name.endswith(".csv") else "Parquet"
            assert done.stderr == (
                f"ample-batch: {name}: --sheet Leads is for XLSX workbooks, and this is a {kind}"
                " file; leave --sheet out or give the workbook\n"
            )
        assert fake.summary().requests == 0
    assert not list(DATA.glob("*.validated.*"))


def test_no_sheet_with_emails_is_one_line_and_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "figures.xlsx"
    book = load_workbook(DATA / "summary_first.xlsx")
    del book["Leads"]
    book.save(src)
    with FakeInThread(**FAST) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s"))
        assert fake.summary().requests == 0
    assert done.returncode == 2
    assert done.stderr == (
        "ample-batch: figures.xlsx: no sheet has an email column; choose the sheet with "
        "--sheet NAME (sheets: 'Summary', 'Notes') and its column with --email-column NAME\n"
    )


def _jobs(state: Path, backend: StateBackend) -> list[dict[str, Any]]:
    done = cli("status", "--json", "--state-dir", str(state), *backend.args)
    assert done.returncode == 0, done.stderr
    return [item["job"] for item in json.loads(done.stdout)]


def _sheet_rows(path: Path, sheet: str) -> list[list[Any]]:
    return [[c.value for c in row] for row in load_workbook(path)[sheet].iter_rows()]


def test_two_sheets_of_one_workbook_are_two_jobs(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = tmp_path / "regions.xlsx"
    shutil.copy(DATA / "two_sheets.xlsx", src)
    state, east_out, west_out = tmp_path / "s", tmp_path / "east.xlsx", tmp_path / "west.xlsx"
    with FakeInThread(**FAST) as fake:
        # The default sheet (East, the first), then the same sheet by name: one job.
        east = _validate(fake, src, state, "-o", str(east_out), *state_backend.args)
        assert cli(*east).returncode == 0
        assert fake.summary().credits_spent == 4
        again = cli(*east, "--sheet", "East")
        assert again.returncode == 0, again.stderr
        assert fake.summary().credits_spent == 4
        [first] = _jobs(state, state_backend)
        # The estimate of West knows it is another job: nothing of it done, two cached.
        estimate = cli("estimate", str(src), "--sheet", "West", "--json", "--state-dir",
                       str(state), *state_backend.args)  # fmt: skip
        assert estimate.returncode == 0, estimate.stderr
        figures = json.loads(estimate.stdout)
        assert (figures["already_done"], figures["cached"], figures["credits_needed"]) == (0, 2, 3)
        # West: a job of its own, paying only for the three addresses East did not buy.
        west = cli(*_validate(fake, src, state, "--sheet", "West", "-o", str(west_out),
                              *state_backend.args))  # fmt: skip
        assert west.returncode == 0, west.stderr
        assert fake.summary().credits_spent == 4 + 3
        assert fake.summary().emails_charged_twice == 0
    jobs = _jobs(state, state_backend)
    assert len(jobs) == 2 and first["id"] in {job["id"] for job in jobs}
    # The default sheet's job keeps the id it had before sheets were told apart.
    if state_backend.url is None:
        old_id = job_id_for(first["input_path"], first["fingerprint"], "Email")
    else:
        old_id = pg.content_job_id(first["fingerprint"], "Email")
    assert first["id"] == old_id

    def verdict(cell: str | None) -> str:
        return expected_result(cell or "")[0]

    for out, validated, other in ((east_out, "East", "West"), (west_out, "West", "East")):
        rows = _sheet_rows(out, validated)
        assert rows[0] == ["Name", "Email", "Region", "email_result", "email_catch_all"]
        assert [r[3] for r in rows[1:]] == [verdict(r[1]) for r in rows[1:]]
        assert _sheet_rows(out, other) == _sheet_rows(src, other)  # kept as it was
    assert [r[3] for r in _sheet_rows(west_out, "West")[1:]][-1] == "no_email"
    if state_backend.url is not None:
        assert not state.exists()


def test_each_sheet_has_its_own_default_output(tmp_path: Path) -> None:
    src = tmp_path / "regions.xlsx"
    shutil.copy(DATA / "two_sheets.xlsx", src)
    with FakeInThread(**FAST) as fake:
        for sheet in ([], ["--sheet", "East"], ["--sheet", "West"]):
            done = cli(*_validate(fake, src, tmp_path / "s", *sheet))
            assert done.returncode == 0, done.stderr
    # The default sheet (named or not) writes the usual name; another sheet one of its own,
    # so its run does not write over the default sheet's verdicts.
    assert sorted(p.name for p in tmp_path.glob("*.validated.xlsx")) == [
        "regions.West.validated.xlsx",
        "regions.validated.xlsx",
    ]
    assert _sheet_rows(tmp_path / "regions.validated.xlsx", "East")[0][-2:] == [
        "email_result",
        "email_catch_all",
    ]
    assert _sheet_rows(tmp_path / "regions.West.validated.xlsx", "West")[0][-1] == "email_catch_all"

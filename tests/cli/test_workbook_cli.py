"""`validate` on a workbook whose leads are not on the first sheet, end to end against the
fake API: the sheet is found and said, the output keeps the other sheets; a workbook without
an email column anywhere is refused in one line naming `--sheet NAME` and the sheets."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import DATA, FakeInThread, cli, expected_result
from openpyxl import load_workbook

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

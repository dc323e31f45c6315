"""Workbooks with more than the leads: the sheet with the email column is found when the first
has none, the messages name `--sheet NAME` and the sheets, and the output keeps every other
sheet (values, formulas, text, number formats, order, visibility)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from helpers import DATA
from openpyxl import Workbook, load_workbook

from ample_batch.errors import InputError
from ample_batch.files.inspect import inspect_input
from ample_batch.files.join import enrich_file
from ample_batch.files.verdicts import Verdicts

VERDICTS = Verdicts.from_rows([("nria@globex.io", "deliverable", False)])


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


SUMMARY = [["Campaign", "Spring"], ["Owner", "Ana"]]
LEADS = [["Name", "Email"], ["Ana", "ana@acme.com"], ["Bo", "bo@acme.com"]]


def test_the_sheet_with_the_emails_is_found_after_a_summary_sheet() -> None:
    spec = inspect_input(DATA / "summary_first.xlsx")
    assert (spec.sheet, spec.email_column, spec.columns) == ("Leads", "Email", spec.columns)
    assert spec.warnings == [
        "read sheet 'Leads': the first sheet, 'Summary', has no email column "
        "(choose another with --sheet NAME)"
    ]
    assert inspect_input(DATA / "summary_first.xlsx", sheet="Leads").warnings == []


def test_the_first_sheet_wins_when_it_has_emails() -> None:
    spec = inspect_input(DATA / "leads.xlsx")  # `Other` has emails too: not asked
    assert (spec.sheet, spec.warnings) == ("Leads", [])


def test_an_empty_first_sheet_is_skipped(tmp_path: Path) -> None:
    path = workbook(tmp_path / "w.xlsx", {"Cover": [], "Leads": LEADS})
    assert inspect_input(path).sheet == "Leads"


def test_a_named_column_is_looked_for_in_every_sheet(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "w.xlsx", {"Summary": SUMMARY, "Leads": [["who", "addr"], ["Ana", "a@b.co"]]}
    )
    spec = inspect_input(path, email_column="addr")
    assert (spec.sheet, spec.email_column) == ("Leads", "addr")


def test_several_sheets_with_emails_ask_for_sheet(tmp_path: Path) -> None:
    path = workbook(tmp_path / "w.xlsx", {"Summary": SUMMARY, "Q1": LEADS, "Q2": LEADS})
    with pytest.raises(InputError) as raised:
        inspect_input(path)
    assert str(raised.value) == (
        "w.xlsx: sheets 'Q1' and 'Q2' each have an email column; choose one with --sheet NAME "
        "(sheets: 'Summary', 'Q1', 'Q2')"
    )
    assert inspect_input(path, sheet="Q2").sheet == "Q2"


def test_no_sheet_with_emails_names_sheet_and_the_sheets(tmp_path: Path) -> None:
    path = workbook(tmp_path / "w.xlsx", {"Summary": SUMMARY, "Notes": [["a", "b"], ["1", "2"]]})
    with pytest.raises(InputError) as raised:
        inspect_input(path)
    assert str(raised.value) == (
        "w.xlsx: no sheet has an email column; choose the sheet with --sheet NAME "
        "(sheets: 'Summary', 'Notes') and its column with --email-column NAME"
    )


def test_a_single_sheet_without_emails_still_suggests_email_column(tmp_path: Path) -> None:
    path = workbook(tmp_path / "w.xlsx", {"Only": SUMMARY})
    with pytest.raises(InputError, match=r"no email column found; name it with --email-column"):
        inspect_input(path)


def test_only_a_sheet_other_than_the_default_enters_the_job_identity(tmp_path: Path) -> None:
    # The default sheet (the first, or the one with emails after a summary) keeps the id its
    # jobs always had, given by name or not; any other sheet is a job of its own.
    cases = {
        (DATA / "two_sheets.xlsx", None): None,
        (DATA / "two_sheets.xlsx", "East"): None,
        (DATA / "two_sheets.xlsx", "West"): "West",
        (DATA / "summary_first.xlsx", None): None,
        (DATA / "summary_first.xlsx", "Leads"): None,
        (DATA / "leads.xlsx", "Other"): "Other",
    }
    # No default here: the first sheet with emails keeps the id `--sheet Q1` always had.
    several = workbook(tmp_path / "w.xlsx", {"Summary": SUMMARY, "Q1": LEADS, "Q2": LEADS})
    cases[(several, "Q1")] = None
    cases[(several, "Q2")] = "Q2"
    for (path, sheet), expected in cases.items():
        assert inspect_input(path, sheet=sheet).identity_sheet == expected, (path.name, sheet)
    assert inspect_input(DATA / "two_sheets.xlsx", sheet="West").warnings == []


def _cells(sheet: Any) -> list[list[Any]]:
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


def test_the_output_workbook_keeps_every_other_sheet(tmp_path: Path) -> None:
    out = tmp_path / "out.xlsx"
    enrich_file(inspect_input(DATA / "summary_first.xlsx"), VERDICTS, out, missing="failed")
    source, written = load_workbook(DATA / "summary_first.xlsx"), load_workbook(out)
    assert written.sheetnames == ["Summary", "Leads", "Notes"]
    for name in ("Summary", "Notes"):
        assert _cells(written[name]) == _cells(source[name])
    summary = written["Summary"]
    assert (summary["B4"].value, summary["B4"].data_type) == ("=COUNTA(Leads!B:B)-1", "f")
    assert (summary["B5"].value, summary["B5"].data_type) == ("=not a formula", "s")
    assert summary["B3"].value == dt.datetime(2026, 3, 1)
    assert summary["B3"].number_format == "yyyy-mm-dd"
    assert _cells(written["Leads"]) == [
        ["Name", "Email", "Company", "email_result", "email_catch_all"],
        ["Núria Peña", "Núria Peña <nria@globex.io>", "Globex", "deliverable", "false"],
        ["Max", "mailto:Max@Example.com", "Initech", "failed", None],
        ["Blank", None, "Hooli", "no_email", None],
    ]


def test_a_hidden_sheet_stays_hidden_and_split_files_hold_the_leads_only(tmp_path: Path) -> None:
    path = workbook(tmp_path / "w.xlsx", {"Leads": LEADS, "Lookup": [["k", "v"], ["a", 1]]})
    book = load_workbook(path)
    book["Lookup"].sheet_state = "hidden"
    book.save(path)
    out = tmp_path / "w.validated.xlsx"
    written = enrich_file(inspect_input(path), VERDICTS, out, missing="failed", split=True)
    result = load_workbook(out)
    assert result.sheetnames == ["Leads", "Lookup"]
    assert result["Lookup"].sheet_state == "hidden"
    assert _cells(result["Lookup"]) == [["k", "v"], ["a", 1]]
    assert load_workbook(written.split["failed"].path).sheetnames == ["Leads"]


def test_the_trap_workbook_keeps_its_other_and_empty_sheets(tmp_path: Path) -> None:
    out = tmp_path / "out.xlsx"
    enrich_file(inspect_input(DATA / "leads.xlsx"), VERDICTS, out)
    written = load_workbook(out)
    assert written.sheetnames == ["Leads", "Other", "Empty"]
    assert _cells(written["Other"]) == [["contact", "city"], ["x@example.com", "Porto"]]

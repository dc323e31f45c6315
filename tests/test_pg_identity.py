"""A job in the shared state is found by what it is: the same content and email column give
the same id under any path, on any host."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import ROOT

from ample_batch.files.inspect import fingerprint, inspect_input
from ample_batch.jobs.records import job_id_for
from ample_batch.pg import content_job_id

LEADS = ROOT / "sample_data" / "leads.csv"


def _id(path: Path, column: str | None = None) -> str:
    spec = inspect_input(path, email_column=column) if column else inspect_input(path)
    return content_job_id(fingerprint(spec), spec.email_column)


def test_a_copy_elsewhere_is_the_same_job(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-host" / "renamed.csv"
    elsewhere.parent.mkdir()
    shutil.copy(LEADS, elsewhere)
    assert _id(elsewhere) == _id(LEADS)
    # The SQLite store's ids are per path: the two are never confused.
    spec = inspect_input(LEADS)
    assert job_id_for(str(LEADS), fingerprint(spec), spec.email_column) != _id(LEADS)


def test_a_changed_byte_or_another_column_is_another_job(tmp_path: Path) -> None:
    changed = tmp_path / "leads.csv"
    changed.write_bytes(LEADS.read_bytes() + b"Late,Row,,,,late@example.com,,,,,,\n")
    assert _id(changed) != _id(LEADS)
    assert content_job_id("f" * 40, "email") != content_job_id("f" * 40, "work_email")


def test_two_sheets_of_one_workbook_are_two_jobs() -> None:
    ids = {content_job_id("f" * 40, "email", sheet=s) for s in (None, "Leads", "Leads 2")}
    assert len(ids) == 3

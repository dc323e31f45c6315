"""`validate --split` and `--sent-column [NAME]` on the command line: the split files in the
summary table and in --summary-json, the default and a given column name, one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import FakeInThread, cli, lead_rows, read_csv, write_leads

FAST = {"retry_after": 0.1, "emails_per_second": 50000}


def _validate(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def test_split_in_the_summary_json_and_the_table(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(120, blanks=3, invalid=2))
    summary_path = tmp_path / "run.json"
    with FakeInThread(**FAST) as fake:
        done = cli(
            *_validate(fake, src, tmp_path / "s", "--split", "--summary-json", str(summary_path)),
            "--sent-column",  # last, with no NAME: the default name
        )
    assert done.returncode == 0, done.stderr
    data = json.loads(summary_path.read_text())
    out = tmp_path / "leads.validated.csv"
    rows = read_csv(out)
    assert list(rows[0])[-1] == "email_sent"
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["email_result"]] = counts.get(row["email_result"], 0) + 1
    assert data["split"] == {
        value: {"path": str(tmp_path / f"leads.validated.{value}.csv"), "rows": count}
        for value, count in sorted(counts.items())
    }
    for value, item in data["split"].items():
        assert read_csv(Path(item["path"])) == [r for r in rows if r["email_result"] == value]
        assert f"{item['rows']:,} rows: leads.validated.{value}.csv" in done.stderr
    assert "split files" in done.stderr


def test_sent_column_takes_a_name(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(10))
    with FakeInThread(**FAST) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "--sent-column=address", "-q"))
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "leads.validated.csv")
    assert list(rows[0])[-3:] == ["email_result", "email_catch_all", "address"]
    assert not list(tmp_path.glob("leads.validated.*.csv")), "no --split, no split files"


def test_a_taken_sent_column_name_is_one_line_and_exit_2(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(10))
    with FakeInThread(**FAST) as fake:
        done = cli(*_validate(fake, src, tmp_path / "s", "--sent-column", "Email"))
        assert fake.summary().requests == 0
    assert done.returncode == 2
    assert done.stderr == (
        "ample-batch: leads.csv: already has a column named 'Email'; "
        "give --sent-column another name\n"
    )


def test_sent_column_before_input_says_what_to_do(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(10))
    done = cli("validate", "--sent-column", str(src), "--simulate")
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"ample-batch: Invalid value for '--sent-column': {str(src)!r} is a file, not a column "
        "name: give --sent-column after INPUT, or as --sent-column=NAME (see "
    )
    assert done.stderr.count("\n") == 1

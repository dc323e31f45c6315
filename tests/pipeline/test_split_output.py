"""The list sales ops upload, end to end against the fake API: `split=True` files checked row
by row against the output, only when the job completes; the sent-address column; the
cp1252 input back as UTF-8 with a BOM."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import KEY, FakeInThread, expected_result, lead_rows, read_csv, write_leads

import ample_batch
from ample_batch import InputError, Stopped
from ample_batch.files.emails import normalise_email
from ample_batch.files.spec import SplitFile
from ample_batch.files.split import SPLIT_VALUES, split_path

FAST = {"retry_after": 0.1, "emails_per_second": 50000}
LIMIT = "100000/hour"


def _keywords(fake: FakeInThread, tmp_path: Path, **kw: object) -> dict[str, object]:
    return {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path / "s", **kw}


def _assert_split(out: Path, split: dict[str, SplitFile]) -> None:
    written = read_csv(out)
    by_value: dict[str, list[dict[str, str]]] = {}
    for row in written:
        by_value.setdefault(row["email_result"], []).append(row)
    assert sorted(split) == sorted(by_value)
    for value, rows in by_value.items():
        assert split[value].path == str(split_path(out, value).absolute())
        assert split[value].rows == len(rows)
        assert read_csv(Path(split[value].path)) == rows  # every column, input order


def test_split_and_sent_column_through_the_python_api(tmp_path: Path) -> None:
    rows = lead_rows(400, blanks=5, invalid=4)
    rows.append({"id": "n1", "name": "named", "Email": "Núria Peña <NRIA@globex.io>", "zip": ""})
    rows.append({"id": "m1", "name": "mailto", "Email": "mailto:Max@Example.com", "zip": ""})
    src = write_leads(tmp_path / "leads.csv", rows)
    stale = split_path(tmp_path / "leads.validated.csv", "failed")
    stale.write_text("an earlier run's failed rows\n")
    with FakeInThread(**FAST) as fake:
        summary = ample_batch.validate(
            src, split=True, sent_column=True, **_keywords(fake, tmp_path, usage_limit=LIMIT)
        )
    out = tmp_path / "leads.validated.csv"
    assert summary.complete and summary.output == str(out)
    _assert_split(out, summary.split)
    assert {"no_email", "invalid_syntax"} <= set(summary.split)
    assert {v: f.rows for v, f in summary.split.items()} == summary.verdicts
    assert not stale.exists(), "a verdict the output no longer holds keeps no file"
    written = read_csv(out)
    assert list(written[0])[-3:] == ["email_result", "email_catch_all", "email_sent"]
    for row in written:
        normalised = normalise_email(row["Email"])
        assert (row["email_result"], row["email_catch_all"]) == expected_result(normalised)
        unsent = row["email_result"] in {"no_email", "invalid_syntax"}
        assert row["email_sent"] == ("" if unsent else normalised)
    assert {r["id"]: r["email_sent"] for r in written if r["id"] in {"n1", "m1"}} == {
        "n1": "nria@globex.io",
        "m1": "max@example.com",
    }


def test_split_files_appear_only_once_the_job_completes(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(600))
    out = tmp_path / "checked.parquet"
    with FakeInThread(**FAST) as fake:
        options = _keywords(fake, tmp_path, output=out, split=True, sent_column="sent")
        with pytest.raises(Stopped, match="run the same command again") as stopped:
            ample_batch.validate(src, usage_limit="300/30s", max_runtime=1.5, **options)
        stopped_summary = stopped.value.summary  # type: ignore[attr-defined]
        assert stopped_summary.split == {}
        assert "split=True: the split files are written once the job completes" in (
            stopped_summary.warnings
        )
        partial = tmp_path / "checked.partial.parquet"
        assert partial.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
            "checked.partial.parquet",
            "leads.csv",
        ]
        summary = ample_batch.validate(src, usage_limit=LIMIT, **options)
    main = pq.read_table(out)
    assert main.schema.names[-1] == "sent"
    results = main.column("email_result").to_pylist()
    for value in SPLIT_VALUES:
        path = split_path(out, value)
        assert path.exists() == (value in results)
        if value in results:
            expected = main.filter([r == value for r in results])
            assert pq.read_table(path).equals(expected)
            assert summary.split[value].rows == expected.num_rows


def test_a_bad_sent_column_is_refused_before_anything_is_spent(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(**FAST) as fake:
        with pytest.raises(InputError, match="already has a column named 'zip'"):
            ample_batch.validate(src, sent_column="zip", **_keywords(fake, tmp_path))
        with pytest.raises(TypeError, match="sent_column must be True or a column name"):
            ample_batch.validate(src, sent_column=3, **_keywords(fake, tmp_path))  # type: ignore[typeddict-item]
        assert fake.summary().requests == 0


def test_a_cp1252_export_comes_back_as_utf8_with_a_bom(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes("Nom;E-mail;Ville\r\nRenée;renee@acme.com;Montréal\r\n".encode("cp1252"))
    with FakeInThread(**FAST) as fake:
        summary = ample_batch.validate(src, split=True, **_keywords(fake, tmp_path))
    data = Path(summary.output).read_bytes()
    result, catch_all = expected_result("renee@acme.com")
    assert (
        data
        == (
            "\ufeffNom;E-mail;Ville;email_result;email_catch_all\r\n"
            f"Renée;renee@acme.com;Montréal;{result};{catch_all}\r\n"
        ).encode()
    )
    assert Path(summary.split[result].path).read_bytes() == data


def test_split_asked_for_on_a_rerun_of_a_finished_job_costs_nothing(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50, blanks=1))
    with FakeInThread(**FAST) as fake:
        first = ample_batch.validate(src, **_keywords(fake, tmp_path))
        assert first.split == {}
        assert not list(tmp_path.glob("leads.validated.*.csv"))
        again = ample_batch.validate(src, split=True, **_keywords(fake, tmp_path))
        charged = fake.summary().credits_spent
    assert charged == 50 and again.credits_spent == 0
    _assert_split(tmp_path / "leads.validated.csv", again.split)

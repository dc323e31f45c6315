"""`--split` and the sent column at the file level: split files against the main output row by
row in every output format, stale files, atomicity, and the address as sent."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DATA, ROOT
from python_calamine import CalamineWorkbook

from ample_batch.errors import InputError, OutputUnwritten
from ample_batch.files.appended import appended_columns, check_sent_column
from ample_batch.files.inspect import inspect_input
from ample_batch.files.join import enrich_file
from ample_batch.files.split import SPLIT_VALUES, Splitter, check_split_paths, split_path
from ample_batch.files.verdicts import Verdicts

VERDICTS = Verdicts.from_rows(
    [
        ("ana@example.com", "deliverable", False),
        ("bob@example.com", "risky", True),
        ("dee@example.com", "undeliverable", None),
        ("zoe@example.com", "deliverable", False),
        ("cy@example.com", "unknown", None),
    ]
)


def read_table(path: Path) -> pa.Table:
    """Any output as a table of its cells (text for CSV and XLSX)."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pq.read_table(path)
    if name.endswith(".xlsx"):
        book = CalamineWorkbook.from_path(str(path))
        rows = book.get_sheet_by_name(book.sheet_names[0]).to_python()
        header, body = [str(c) for c in rows[0]], rows[1:]
        return pa.table({h: [str(r[i]) for r in body] for i, h in enumerate(header)})
    data = path.read_bytes()
    data = gzip.decompress(data) if name.endswith(".gz") else data
    text = data.decode("utf-8-sig")
    delimiter = "\t" if ".tsv" in name else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header, body = rows[0], rows[1:]
    return pa.table({h: [r[i] for r in body] for i, h in enumerate(header)})


def assert_split_matches(output: Path, split: dict[str, object]) -> None:
    """Each split file holds exactly its verdict's rows of the output, in order, all columns."""
    main = read_table(output)
    results = main.column("email_result").to_pylist()
    assert sorted(split) == sorted(set(results))
    for value in SPLIT_VALUES:
        path = split_path(output, value)
        if value not in split:
            assert not path.exists()
            continue
        expected = main.filter(pa.array([r == value for r in results]))
        got = read_table(path)
        assert got.schema.names == main.schema.names
        assert got.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("out", ["o.csv", "o.csv.gz", "o.parquet", "o.xlsx", "o.tsv"])
def test_split_files_hold_each_verdicts_rows_in_order(tmp_path: Path, out: str) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    output = tmp_path / out
    written = enrich_file(spec, VERDICTS, output, missing="failed", split=True)
    assert_split_matches(output, written.split)
    assert {v: f.rows for v, f in written.split.items()} == written.results
    assert all(Path(f.path).is_absolute() and Path(f.path).exists() for f in written.split.values())
    assert split_path(output, "deliverable").name == out.replace("o.", "o.deliverable.", 1)
    assert not list(tmp_path.glob(".*.tmp"))


def test_split_of_a_parquet_keeps_the_schema(tmp_path: Path) -> None:
    spec = inspect_input(ROOT / "sample_data" / "leads.parquet")
    output = tmp_path / "leads.validated.parquet"
    verdicts = Verdicts.from_rows([("anakowalski0@icloud.com", "risky", True)])
    written = enrich_file(spec, verdicts, output, missing="failed", split=True)
    assert sorted(written.split) == ["failed", "invalid_syntax", "no_email", "risky"]
    assert_split_matches(output, written.split)
    for item in written.split.values():
        assert pq.read_schema(item.path) == pq.read_schema(output)


def test_sent_column_of_a_parquet_input_is_null_where_nothing_was_sent(tmp_path: Path) -> None:
    spec = inspect_input(ROOT / "sample_data" / "leads.parquet")
    output = tmp_path / "o.parquet"
    enrich_file(spec, Verdicts.from_rows([]), output, sent_column="email_sent")
    table = pq.read_table(output, columns=["email_result", "email_sent"]).to_pylist()
    assert {r["email_result"] for r in table if r["email_sent"] is None} == {
        "no_email",
        "invalid_syntax",
    }
    assert all(r["email_sent"] for r in table if r["email_result"] == "pending")


def test_stale_split_files_are_removed_and_others_left_alone(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    output = tmp_path / "o.csv"
    stale = split_path(output, "unknown")
    stale.write_text("a previous run's unknown rows\n")
    mine = tmp_path / "o.notes.csv"  # not a verdict's name: never ours to remove
    mine.write_text("keep me\n")
    written = enrich_file(spec, VERDICTS, output, missing="failed", split=True)
    assert "unknown" not in written.split
    assert not stale.exists()
    assert mine.read_text() == "keep me\n"


def test_a_failed_write_leaves_no_split_file(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    output = tmp_path / "o.csv"
    output.mkdir()  # the main output cannot replace a directory: every split file must go too
    with pytest.raises(OutputUnwritten, match=r"o\.csv: cannot be written"):
        enrich_file(spec, VERDICTS, output, missing="failed", split=True, check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv"]


def test_an_error_mid_stream_removes_every_temporary_file(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    batch = pa.record_batch(
        {"email": ["a", "b", "c"], "email_result": ["risky", "no_email", "risky"]}
    )
    with pytest.raises(RuntimeError, match="disk gone"), contextlib.ExitStack() as stack:
        splitter = Splitter(spec, tmp_path / "o.csv", ("email_result",), stack)
        splitter.feed(batch)
        splitter.feed(batch)
        raise RuntimeError("disk gone")
    assert list(tmp_path.iterdir()) == []


def test_a_split_file_must_not_be_the_input(tmp_path: Path) -> None:
    src = tmp_path / "leads.validated.risky.csv"
    src.write_bytes((DATA / "quoted.csv").read_bytes())
    spec = inspect_input(src)
    with pytest.raises(InputError, match=r"--split would overwrite the input with its risky"):
        check_split_paths(spec, tmp_path / "leads.validated.csv")
    (tmp_path / "o.unknown.csv").mkdir()
    with pytest.raises(InputError, match=r"o\.unknown\.csv: is a directory, where --split"):
        check_split_paths(spec, tmp_path / "o.csv")


# ---------------------------------------------------------------- the address as sent


SENT = ["ana@example.com", "bob@example.com", "", "dee@example.com"]


@pytest.mark.parametrize("out", ["o.csv", "o.parquet", "o.xlsx"])
def test_sent_column_holds_the_normalised_address(tmp_path: Path, out: str) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    output = tmp_path / out
    enrich_file(spec, VERDICTS, output, sent_column="email_sent")
    table = read_table(output)
    assert table.schema.names[-3:] == list(appended_columns("email_sent"))
    sent = table.column("email_sent").to_pylist()
    if out.endswith(".parquet"):
        assert table.schema.field("email_sent").type == pa.string()
        assert table.schema.field("email_catch_all").type == pa.bool_()
    assert sent == SENT  # text input: "" like its other empty cells


def test_sent_column_unwraps_names_and_mailto(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        "name,email\n"
        "Núria,Núria Peña <nria@globex.io>\n"
        "Max,mailto:Max@Example.com?subject=Hi\n"
        "Bad,not an email\n"
        "Blank,\n",
        encoding="utf-8",
    )
    output = tmp_path / "o.csv"
    enrich_file(inspect_input(src), Verdicts.from_rows([]), output, sent_column="sent")
    rows = read_table(output).to_pylist()
    assert [(r["email_result"], r["sent"]) for r in rows] == [
        ("pending", "nria@globex.io"),
        ("pending", "max@example.com"),
        ("invalid_syntax", ""),
        ("no_email", ""),
    ]


def test_sent_column_name_must_be_new(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    for taken in ("notes", "email_result"):
        with pytest.raises(InputError, match=rf"already has a column named '{taken}'"):
            check_sent_column(spec, taken)
    with pytest.raises(InputError, match="the column name is blank"):
        check_sent_column(spec, " ")

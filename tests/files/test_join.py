"""Verdicts, enrich_batches and enrich_file: every row, in order, with its verdict."""

from __future__ import annotations

import csv
import dataclasses
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DATA, ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from ample_batch.errors import InputError, OutputUnwritten
from ample_batch.files.emails import is_valid_email, normalise_email
from ample_batch.files.inspect import inspect_input
from ample_batch.files.join import Enriched, enrich_batches, enrich_file
from ample_batch.files.verdicts import Verdicts


def table(spec_path: Path, verdicts: Verdicts, **options: str) -> pa.Table:
    spec = inspect_input(spec_path)
    return pa.Table.from_batches(list(enrich_batches(spec, verdicts, **options)))


def test_from_rows() -> None:
    v = Verdicts.from_rows([("a@b.co", "risky", None), ("c@d.co", "deliverable", True)])
    assert len(v) == 2
    assert v.email.to_pylist() == ["a@b.co", "c@d.co"]
    assert v.result.to_pylist() == ["risky", "deliverable"]
    assert v.catch_all.to_pylist() == [None, True]
    assert len(Verdicts.from_rows([])) == 0


def test_every_kind_of_row() -> None:
    verdicts = Verdicts.from_rows(
        [
            ("ana@example.com", "deliverable", False),
            ("bob@example.com", "risky", True),
        ]
    )
    out = table(DATA / "quoted.csv", verdicts)
    assert out.column_names[-2:] == ["email_result", "email_catch_all"]
    assert out.column("email_result").to_pylist() == ["deliverable", "risky", "no_email", "pending"]
    assert out.column("email_catch_all").to_pylist() == ["false", "true", "", ""]
    assert out.column("email").to_pylist()[1] == "  Bob@Example.COM  "  # the cell is untouched
    failed = table(DATA / "quoted.csv", verdicts, missing="failed")
    assert failed.column("email_result").to_pylist()[3] == "failed"


def test_invalid_syntax_is_never_looked_up() -> None:
    out = table(DATA / "pipes.txt", Verdicts.from_rows([("na", "deliverable", True)]))
    assert out.column("email_result").to_pylist() == ["pending", "invalid_syntax"]
    assert out.column("email_catch_all").to_pylist() == ["", ""]


def test_only_the_vocabulary_is_written() -> None:
    verdicts = Verdicts.from_rows(
        [
            ("ana@example.com", '=HYPERLINK("http://evil")', True),
            ("bob@example.com", "Deliverable", None),
        ]
    )
    out = table(DATA / "quoted.csv", verdicts)
    assert out.column("email_result").to_pylist()[:2] == ["unknown", "unknown"]


def test_verdict_emails_are_matched_after_normalising() -> None:
    verdicts = Verdicts.from_rows(
        [("  ANA@example.com", "undeliverable", False), ("mailto:Dee@Example.com", "risky", None)]
    )
    out = table(DATA / "quoted.csv", verdicts)
    assert out.column("email_result").to_pylist() == [
        "undeliverable",
        "pending",
        "no_email",
        "risky",
    ]


@pytest.mark.parametrize("normalised", [False, True])
def test_a_repeated_verdict_email_keeps_the_last(normalised: bool) -> None:
    verdicts = Verdicts.from_rows(
        [("ana@example.com", "risky", True), ("ana@example.com", "deliverable", False)],
        normalised=normalised,
    )
    out = table(DATA / "quoted.csv", verdicts)
    assert out.column("email_result").to_pylist()[0] == "deliverable"
    assert out.column("email_catch_all").to_pylist()[0] == "false"


def test_many_verdicts_hashed_in_slices_find_their_rows(tmp_path: Path) -> None:
    # Past one hashing slice (262,144), as the pipeline's normalised verdicts are read.
    count = 300_000
    emails = [f"lead{i}@example.com" for i in range(count)]
    results = ["deliverable", "risky", "unknown", "undeliverable"]
    rows = [(e, results[i % 4], None if i % 3 == 0 else i % 2 == 0) for i, e in enumerate(emails)]
    verdicts = Verdicts.from_rows(rows, normalised=True)
    picked = [0, 1, 262_143, 262_144, 262_145, count - 1]
    src = tmp_path / "leads.parquet"
    pq.write_table(pa.table({"email": [emails[i].upper() for i in picked] + ["x@nowhere.io"]}), src)
    out = pa.Table.from_batches(list(enrich_batches(inspect_input(src), verdicts)))
    assert out.column("email_result").to_pylist() == [rows[i][1] for i in picked] + ["pending"]
    assert out.column("email_catch_all").to_pylist() == [rows[i][2] for i in picked] + [None]


def test_parquet_catch_all_is_a_nullable_bool() -> None:
    verdicts = Verdicts.from_rows([("a@example.com", "deliverable", True)])
    out = table(DATA / "nulls.parquet", verdicts)
    assert out.schema.field("email_catch_all").type == pa.bool_()
    assert out.column("email_catch_all").to_pylist() == [True, None, None, None]
    assert out.column("email_result").to_pylist() == [
        "deliverable",
        "no_email",
        "pending",
        "no_email",
    ]


def test_bad_arguments(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    with pytest.raises(ValueError, match="missing must be one of pending, failed, unknown"):
        next(enrich_batches(spec, Verdicts.from_rows([]), missing="deliverable"))
    lopsided = Verdicts(pa.array(["a@b.co"]), pa.array([], pa.string()), pa.array([], pa.bool_()))
    with pytest.raises(ValueError, match="differ in length"):
        next(enrich_batches(spec, lopsided))
    # Raised even when the input turns out to hold no rows at all (emptied since inspected).
    pq.write_table(pa.table({"email": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    parquet = inspect_input(DATA / "nulls.parquet")
    emptied = dataclasses.replace(parquet, path=tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="differ in length"):
        list(enrich_batches(emptied, lopsided))


def test_enrich_file_keeps_every_byte_of_a_minimally_quoted_file(tmp_path: Path) -> None:
    sample = ROOT / "sample_data" / "leads.csv"
    spec = inspect_input(sample)
    emails = sorted({normalise_email(r["Email"]) for r in csv.DictReader(sample.open())})
    emails = [e for e in emails if is_valid_email(e)]
    results = ["deliverable", "risky", "unknown", "undeliverable", "failed", "=1+1"]
    verdicts = Verdicts.from_rows(
        (e, results[i % 6], [True, False, None][i % 3]) for i, e in enumerate(emails[::2])
    )
    out = tmp_path / "out.csv"
    enriched = enrich_file(spec, verdicts, out, rows=2000)
    assert enriched.rows == sum(enriched.results.values()) == 2000
    assert list(enriched.results) == sorted(enriched.results)
    assert {"no_email", "invalid_syntax", "pending", "unknown"} <= set(enriched.results)
    written = out.read_bytes()
    assert b"=1+1" not in written
    # The generator quotes only where needed, so only the two new cells differ on each record.
    records = list(csv.reader(written.decode().splitlines(keepends=True)))
    assert records[0][-2:] == ["email_result", "email_catch_all"]
    again = tmp_path / "again.csv"
    with again.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerows(r[:-2] for r in records)
    assert again.read_bytes() == sample.read_bytes()


def test_a_stray_quote_is_read_as_text_and_quoted_on_output(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b'email,name\na@example.com,ab"c\n')
    spec = inspect_input(odd)
    out = tmp_path / "odd.validated.csv"
    enriched = enrich_file(spec, Verdicts.from_rows([("a@example.com", "risky", False)]), out)
    assert enriched == Enriched(rows=1, results={"risky": 1})
    assert (
        out.read_bytes() == b"email,name,email_result,email_catch_all\n"
        b'a@example.com,"ab""c",risky,false\n'
    )


def test_enrich_file_unchecked_says_the_verdicts_are_kept(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    gone = tmp_path / "gone" / "out.csv"  # the directory vanished after the run's check
    with pytest.raises(InputError, match="does not exist"):
        enrich_file(spec, Verdicts.from_rows([]), gone)
    with pytest.raises(OutputUnwritten, match="the verdicts are kept"):
        enrich_file(spec, Verdicts.from_rows([]), gone, check=False)


POOL = [
    "a@x.co",
    "A@X.CO ",
    " mailto:a@x.co",
    "b@x.co",
    "Bee <B@x.co>",
    "",
    "  ",
    "nope",
    "c@y.org",
    "c@@y.org",
    "d@z.io",
    "NA",
]


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(st.sampled_from(POOL), min_size=1, max_size=60),
    known=st.dictionaries(
        st.sampled_from(["a@x.co", "b@x.co", "c@y.org", "d@z.io"]),
        st.tuples(
            st.sampled_from(["deliverable", "risky", "unknown", "undeliverable", "failed"]),
            st.sampled_from([True, False, None]),
        ),
    ),
    batch_rows=st.sampled_from([1, 7, 65_536]),
    normalised=st.booleans(),
)
def test_join_keeps_row_count_and_order(
    cells: list[str],
    known: dict[str, tuple[str, bool | None]],
    batch_rows: int,
    normalised: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leads.parquet"
        ids = [str(i) for i in range(len(cells))]
        pq.write_table(pa.table({"id": ids, "email": cells}), path)
        spec = inspect_input(path, email_column="email")
        rows = ((e, r, c) for e, (r, c) in known.items())
        verdicts = Verdicts.from_rows(rows, normalised=normalised)
        out = pa.Table.from_batches(list(enrich_batches(spec, verdicts, batch_rows=batch_rows)))
    assert out.column("id").to_pylist() == ids
    assert out.column("email").to_pylist() == cells
    expected = []
    for cell in cells:
        key = normalise_email(cell)
        if key == "":
            expected.append(("no_email", None))
        elif not is_valid_email(key):
            expected.append(("invalid_syntax", None))
        elif key in known:
            expected.append(known[key])
        else:
            expected.append(("pending", None))
    got = list(
        zip(
            out.column("email_result").to_pylist(),
            out.column("email_catch_all").to_pylist(),
            strict=True,
        )
    )
    assert got == expected


def test_stopping_early_leaves_no_worker_behind() -> None:
    import threading

    spec = inspect_input(DATA / "nulls.parquet")
    batches = enrich_batches(spec, Verdicts.from_rows([]), batch_rows=1)
    assert next(batches).num_rows == 1
    batches.close()
    names = {t.name.split("_")[0] for t in threading.enumerate()}
    assert not names & {"ample-batch-prefetch", "ample-batch-lookup"}


def test_a_refused_email_stays_invalid_syntax() -> None:
    # The API refused it as malformed although our rule let it through; the store says so.
    verdicts = Verdicts.from_rows([("ana@example.com", "invalid_syntax", None)], normalised=True)
    out = table(DATA / "quoted.csv", verdicts)
    assert out.column("email_result").to_pylist()[0] == "invalid_syntax"
    assert out.column("email_catch_all").to_pylist()[0] == ""

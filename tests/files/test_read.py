"""inspect_input, iter_batches, scan and fingerprint on tiny real files (tests/data/)."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DATA, ROOT

from ample_batch.errors import InputError
from ample_batch.files import parquet as read_parquet
from ample_batch.files.inspect import fingerprint, inspect_input
from ample_batch.files.scan import scan
from ample_batch.files.spec import InputSpec
from ample_batch.files.stream import iter_batches
from ample_batch.files.utf8 import NotUtf8, check_utf8

SAMPLE = ROOT / "sample_data"


def rows(spec: InputSpec) -> list[list[object]]:
    table = pa.Table.from_batches(list(iter_batches(spec)))
    return [list(r) for r in zip(*(c.to_pylist() for c in table.columns), strict=True)]


# ----------------------------------------------------------------------- good files


def test_bom_and_crlf() -> None:
    spec = inspect_input(DATA / "bom_crlf.csv")
    assert (spec.format, spec.delimiter, spec.encoding, spec.bom, spec.newline) == (
        "csv",
        ",",
        "utf-8",
        True,
        "\r\n",
    )
    assert spec.columns == ["Name", "Email", "Zip"]  # the BOM is not part of the first header
    assert spec.email_column == "Email"
    assert rows(spec) == [["Zoë", "zoe@example.com", "00123"], ["José", "JOSE@Example.com ", ""]]


def test_semicolons_and_cp1252() -> None:
    spec = inspect_input(DATA / "semicolon_cp1252.csv")
    assert (spec.delimiter, spec.encoding, spec.warnings) == (
        ";",
        "cp1252",
        ["not UTF-8 (line 2): read as cp1252"],
    )
    assert spec.email_column == "E-mail"
    assert rows(spec) == [["Müller", "mueller@example.de", "Zürich"], ["Renée", "", "Montréal"]]


def test_tabs_and_pipes() -> None:
    tsv = inspect_input(DATA / "tabs.tsv")
    assert tsv.delimiter == "\t"
    assert rows(tsv) == [
        ["Ana", "ana@example.com", "comma, inside"],
        ["Bo", "bo@example", "tab\there"],
    ]
    pipes = inspect_input(DATA / "pipes.txt")
    assert pipes.delimiter == "|"
    assert rows(pipes) == [["001", "a@example.com", "1e5"], ["002", "NA", "-0"]]


def test_cells_are_exact_text() -> None:
    spec = inspect_input(DATA / "quoted.csv")
    assert rows(spec) == [
        ["1", "ana@example.com", "line one\nline two", "00123", "NA"],
        ["2", "  Bob@Example.COM  ", 'she said "hi", then left', "-0", "null"],
        ["3", "", "  padded  ", "", "1e5"],
        ["4", "Dee <dee@example.com>", "crlf\r\ninside", "007", ""],
    ]
    for batch in iter_batches(spec):
        assert all(c.type == pa.string() and c.null_count == 0 for c in batch.columns)


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt"  # Excel's "Unicode Text": UTF-16, tabs
    path.write_bytes("email\tname\r\na@b.co\tZoë\r\n".encode("utf-16"))
    spec = inspect_input(path)
    assert (spec.encoding, spec.bom, spec.delimiter, spec.newline) == ("utf-16", True, "\t", "\r\n")
    assert rows(spec) == [["a@b.co", "Zoë"]]


def test_gzip() -> None:
    spec = inspect_input(DATA / "gzip.csv.gz")
    assert (spec.format, spec.compression) == ("csv", "gzip")
    assert rows(spec) == [["a@example.com", "Ana"], ["b@example.com", "B, b"]]


@pytest.mark.parametrize(
    ("name", "claimed", "expected"),
    [
        ("text_named.parquet", "Parquet", [["a@example.com", "A"]]),
        ("unpacked.csv.gz", "gzip", [["a@example.com", "A"]]),  # a browser unpacked it
    ],
)
def test_text_behind_a_binary_name_is_read_as_csv(
    name: str, claimed: str, expected: list[list[str]]
) -> None:
    spec = inspect_input(DATA / name)
    assert (spec.format, spec.compression) == ("csv", None)
    assert spec.warnings == [f"{name} is named like {claimed} but holds text: read as CSV"]
    assert rows(spec) == expected


def test_blank_lines_are_rows_of_empty_cells() -> None:
    assert rows(inspect_input(DATA / "blank_lines.csv")) == [
        ["a@example.com", "A"],
        ["", ""],
        ["b@example.com", "B"],
    ]
    assert rows(inspect_input(DATA / "single_column.csv")) == [
        ["a@example.com"],
        [""],
        ["B@example.com"],
    ]


def test_duplicate_header_names_are_kept() -> None:
    spec = inspect_input(DATA / "duplicate_header.csv")
    assert spec.columns == ["Name", "Email", "Name"]
    assert rows(spec) == [["Ana", "ana@example.com", "Ana B."]]


def test_email_column_found_by_content() -> None:
    assert inspect_input(DATA / "content_email.csv").email_column == "Contact"


def test_email_column_given() -> None:
    spec = inspect_input(DATA / "two_emails.csv", email_column="Personal Email")
    assert (spec.email_column, spec.email_index) == ("Personal Email", 2)
    assert inspect_input(DATA / "two_emails.csv", email_column="work email").email_column == (
        "Work Email"
    )


def test_parquet_with_nulls() -> None:
    spec = inspect_input(DATA / "nulls.parquet")
    assert (spec.format, spec.delimiter, spec.rows_hint) == ("parquet", None, 4)
    assert rows(spec) == [["a@example.com", "A"], [None, "B"], ["B@Example.com", None], ["", "D"]]


def test_parquet_types_are_kept() -> None:
    spec = inspect_input(DATA / "typed.parquet")
    batch = next(iter_batches(spec))
    assert [f.type for f in batch.schema] == [
        pa.int32(),
        pa.large_string(),
        pa.timestamp("us", tz="Europe/Lisbon"),
        pa.list_(pa.string()),
        pa.struct([("city", pa.string()), ("zip", pa.string())]),
        pa.float64(),
        pa.dictionary(pa.int8(), pa.string()),
    ]
    assert batch.column(3).to_pylist() == [["vip", "eu"], [], None]


@pytest.mark.parametrize("whole_rows", [1 << 20, 1_000], ids=["whole", "streamed"])
def test_parquet_row_groups_come_in_order_whole_or_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_rows: int
) -> None:
    # A group past the limit streams batch by batch; both ways give the same rows in order.
    monkeypatch.setattr(read_parquet, "WHOLE_ROW_GROUP_ROWS", whole_rows)
    table = pa.table({"email": [f"l{i}@x.co" for i in range(5_000)], "n": range(5_000)})
    pq.write_table(table, tmp_path / "g.parquet", row_group_size=1_500)
    spec = inspect_input(tmp_path / "g.parquet")
    batches = list(read_parquet.parquet_batches(spec, batch_rows=400))
    assert pa.Table.from_batches(batches).equals(table)
    # Whole groups come in even pieces of at least the batch size (1,500 = 3 x 500).
    expected = [500, 500, 500] * 3 + [500] if whole_rows > 1_500 else [400] * 3 + [300]
    assert [b.num_rows for b in batches][: len(expected)] == expected


def test_xlsx() -> None:
    spec = inspect_input(DATA / "leads.xlsx")
    assert (spec.format, spec.sheet, spec.email_column, spec.rows_hint) == (
        "xlsx",
        "Leads",
        "Email",
        3,
    )
    table = pa.Table.from_batches(list(iter_batches(spec)))
    assert table.column("Zip").to_pylist() == ["00123", "NA", ""]
    assert table.column("Score").type == pa.float64()
    assert table.column("Score").to_pylist() == [5.0, 7.5, None]
    assert table.column("Signed up").to_pylist() == [
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.datetime(2024, 2, 3),
        None,
    ]
    assert table.column("Active").to_pylist() == [True, False, None]
    assert table.column("Note").to_pylist() == ["=not a formula", "", "two\nlines"]
    other = inspect_input(DATA / "leads.xlsx", sheet="Other")
    assert (other.sheet, other.email_column) == ("Other", "contact")


def test_sample_data() -> None:
    csv_spec = inspect_input(SAMPLE / "leads.csv")
    parquet_spec = inspect_input(SAMPLE / "leads.parquet")
    a, b = scan(csv_spec), scan(parquet_spec)
    assert (a.rows, a.blank, a.invalid, a.valid, a.duplicates) == (
        b.rows,
        b.blank,
        b.invalid,
        b.valid,
        b.duplicates,
    )
    assert sorted(a.unique.to_pylist()) == sorted(b.unique.to_pylist())
    assert a.rows == 2000
    assert {
        "maria.lopez@globex.io",
        "chloe.dubois@socgen.fr",
        "ana+newsletter@proton.me",
        "sales@acme.com",
    } <= set(a.unique.to_pylist())


# ----------------------------------------------------------------------------- scan


def test_scan_counts() -> None:
    result = scan(inspect_input(DATA / "quoted.csv"))
    assert (result.rows, result.blank, result.invalid, result.valid, result.duplicates) == (
        4,
        1,
        0,
        3,
        0,
    )
    assert sorted(result.unique.to_pylist()) == [
        "ana@example.com",
        "bob@example.com",
        "dee@example.com",
    ]
    assert result.unique.type == pa.string()


def test_scan_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "dups.csv"
    path.write_text("email\nA@x.co\n a@x.co\nmailto:a@X.co\nb@x.co\nbad\n\n")
    result = scan(inspect_input(path))
    assert (result.rows, result.blank, result.invalid, result.valid, result.duplicates) == (
        6,
        1,
        1,
        4,
        2,
    )
    assert sorted(result.unique.to_pylist()) == ["a@x.co", "b@x.co"]


def test_scan_finds_a_ragged_row_past_the_head(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    body = "email,name\n" + 'a@example.com,"A\nB"\n' * 80_000 + "z@example.com,Z,extra\n"
    path.write_text(body)
    spec = inspect_input(path)
    with pytest.raises(
        InputError,
        match=r"^big\.csv: line 160002 has 3 fields but the header "
        r"has 2; fix that row",
    ):
        scan(spec)


@pytest.mark.parametrize(
    "tail",
    [
        '"oops\nB,b@x.co,z\nC,c@x.co,w\n',
        '"oops\nB,b@x.co,z',
        '"oops\nB,b@x.co,""z""\n',
        '"oops\n' + "B,b@x.co,z\n" * 20_000,  # one cell past Python csv's 128 KiB cap
    ],
    ids=["newline-at-end", "no-newline-at-end", "escaped-quotes-inside", "huge-cell"],
)
def test_scan_refuses_a_quote_left_open_to_the_end(tmp_path: Path, tail: str) -> None:
    # pyarrow would read everything after the quote as one cell: rows B and C never validated.
    path = tmp_path / "open.csv"
    path.write_text("Name,Email,Note\n" + "A,a@x.co,x\n" * 70_000 + "A,a@x.co," + tail)
    with pytest.raises(
        InputError, match=r"^open\.csv: the quoted field that starts in line 70002 is never closed"
    ):
        scan(inspect_input(path))


@pytest.mark.parametrize(
    "body",
    [
        'Name,Email,Note\nA,a@x.co,x\nB,b@x.co,"two\nlines"\n',
        'Name,Email,Note\nA,a@x.co,x\nB,b@x.co,"two\r\nlines ""quoted"""',
        'Note,Email,Note\nx,a@x.co,"a\nb"\n',  # a repeated last header: always checked
        'Name,Note,Email\nA,"a\nb",a@x.co\n',
    ],
    ids=["closed", "closed-no-newline", "repeated-header", "email-last"],
)
def test_scan_accepts_closed_multiline_cells_at_the_end(tmp_path: Path, body: str) -> None:
    path = tmp_path / "closed.csv"
    path.write_bytes(body.encode())
    assert scan(inspect_input(path)).rows == body.count("@")


@pytest.mark.parametrize("rows", [70_000, 1_000_000], ids=["past-the-head", "past-16-MiB"])
def test_scan_falls_back_to_cp1252_past_the_head(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(b"email,name\n" + b"a@example.com,Ana\n" * rows + b"b@x.co,Ren\xe9e\n")
    spec = inspect_input(path)
    assert (spec.encoding, spec.encoding_guessed) == ("utf-8", True)
    result = scan(spec)
    assert (result.rows, result.spec.encoding) == (rows + 1, "cp1252")
    assert result.spec.warnings == [f"not UTF-8 (line {rows + 2}): read as cp1252"]
    last = list(iter_batches(result.spec))[-1]
    assert last.column(1)[-1].as_py() == "Renée"


def _straddling(tmp_path: Path, compressed: bool, char: bytes, before: int) -> Path:
    """A CSV whose `char` starts `before` bytes ahead of the checker's 16 MiB block edge."""
    head = b"email,name\n"
    line = b"a@example.com,Ana\n"
    filler = (16 << 20) - before - len(head)
    rows, extra = divmod(filler, len(line))
    body = head + line * rows + b"b@x.co," + b"x" * (extra - 7) + char + b"\nc@x.co,Z\n"
    assert body.index(char) == (16 << 20) - before
    if compressed:
        path = tmp_path / "edge.csv.gz"
        path.write_bytes(gzip.compress(body, compresslevel=1))
    else:
        path = tmp_path / "edge.csv"
        path.write_bytes(body)
    return path


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    ("char", "before"),
    [("é".encode(), 1), ("€".encode(), 1), ("€".encode(), 2), ("😀".encode(), 3)],
)
def test_utf8_check_reads_characters_across_its_block_edge(
    tmp_path: Path, compressed: bool, char: bytes, before: int
) -> None:
    spec = inspect_input(_straddling(tmp_path, compressed, char, before))
    check_utf8(spec)  # a sequence cut at the edge would raise NotUtf8 here
    # And the scan, which falls back to cp1252 with a warning on any bad byte, reads UTF-8.
    scanned = scan(spec).spec
    assert (scanned.encoding, scanned.warnings) == ("utf-8", [])


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("before", [0, 1])
def test_utf8_check_finds_a_bad_byte_at_its_block_edge(
    tmp_path: Path, compressed: bool, before: int
) -> None:
    path = _straddling(tmp_path, compressed, b"\xe9", before)
    with pytest.raises(NotUtf8, match=r"has bytes that are not UTF-8 \(0xe9\)") as caught:
        check_utf8(inspect_input(path, encoding="utf-8"))
    body = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
    assert caught.value.line == body[: body.index(b"\xe9")].count(b"\n") + 1


@pytest.mark.parametrize("given", [{"encoding": "utf-8"}, {}], ids=["--encoding", "bom"])
def test_scan_refuses_bad_utf8_past_the_head_when_utf8_is_certain(
    tmp_path: Path, given: dict[str, str]
) -> None:
    path = tmp_path / "late.csv"
    bom = b"" if given else b"\xef\xbb\xbf"
    path.write_bytes(bom + b"email,name\n" + b"a@example.com,Ana\n" * 70_000 + b"b@x.co,R\xe9\n")
    spec = inspect_input(path, **given)  # type: ignore[arg-type]
    assert not spec.encoding_guessed
    with pytest.raises(
        InputError,
        match=r"^late\.csv: line 70002 has bytes that are not UTF-8 "
        r"\(0xe9\); pass the real encoding with --encoding",
    ):
        scan(spec)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("empty.csv", {}, "empty.csv: the file is empty; export the leads again"),
        ("header_only.csv", {}, "header_only.csv: has a header but no rows to validate"),
        (
            "garbage.csv",
            {},
            "garbage.csv: binary data, not text (it has NUL bytes); use .csv, "
            ".tsv, .txt, .csv.gz, .parquet or .xlsx",
        ),
        (
            "not_parquet.parquet",
            {},
            "not_parquet.parquet: not a Parquet file (no PAR1 header); export it again",
        ),
        ("no_rows.parquet", {}, "no_rows.parquet: has a schema but no rows to validate"),
        (
            "ragged.csv",
            {},
            "ragged.csv: line 5 has 3 fields but the header has 2; fix that row "
            "(or an unbalanced quote before it)",
        ),
        (
            "ragged_short.csv",
            {},
            "ragged_short.csv: line 3 has 2 fields but the header has 3; "
            "fix that row (or an unbalanced quote before it)",
        ),
        (
            "no_email.csv",
            {},
            "no_email.csv: no email column found; name it with --email-column "
            "(columns: 'Name', 'City')",
        ),
        (
            "two_emails.csv",
            {},
            "two_emails.csv: 'Work Email' and 'Personal Email' both look "
            "like email columns; choose one with --email-column",
        ),
        (
            "two_emails.csv",
            {"email_column": "mail"},
            "two_emails.csv: no column named 'mail'; columns: 'Name', 'Work Email', "
            "'Personal Email'",
        ),
        (
            "unknown.json",
            {},
            "unknown.json: unknown file type .json; use .csv, .tsv, .txt, "
            ".csv.gz, .parquet or .xlsx",
        ),
        (
            "semicolon_cp1252.csv",
            {"encoding": "utf-8"},
            "semicolon_cp1252.csv: byte 0xfc at offset 19 is not valid utf-8; pass the file's "
            "real encoding with --encoding (e.g. cp1252)",
        ),
        (
            "quoted.csv",
            {"encoding": "klingon"},
            "unknown encoding 'klingon'; try utf-8, cp1252 or latin-1",
        ),
        (
            "corrupt.csv.gz",
            {},
            "corrupt.csv.gz: the gzip data is corrupt or truncated "
            "(Compressed file ended before the end-of-stream marker was "
            "reached)",
        ),
        (
            "leads.xlsx",
            {"sheet": "Nope"},
            "leads.xlsx: no sheet named 'Nope'; sheets: Leads, Other, Empty",
        ),
        (
            "leads.xlsx",
            {"sheet": "Empty"},
            "leads.xlsx: sheet 'Empty' is empty; pick another with --sheet",
        ),
        (
            "typed.parquet",
            {"email_column": "id"},
            "typed.parquet: column 'id' does not hold text; pick the email column with "
            "--email-column",
        ),
    ],
)
def test_bad_input(name: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(InputError) as caught:
        inspect_input(DATA / name, **options)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_truncated_parquet() -> None:
    with pytest.raises(
        InputError,
        match=r"^truncated\.parquet: not a readable Parquet file "
        r"\(truncated or corrupt: .*\); export it again$",
    ):
        inspect_input(DATA / "truncated.parquet")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file; check the path$"):
        inspect_input(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r": is a directory; give the lead file inside it$"):
        inspect_input(tmp_path)


def test_extension_that_lies(tmp_path: Path) -> None:
    disguised = tmp_path / "export.csv"
    shutil.copy(DATA / "nulls.parquet", disguised)
    assert inspect_input(disguised).format == "parquet"
    fake = tmp_path / "fake.xlsx"
    fake.write_text("email\na@b.co\n")
    assert inspect_input(fake).format == "csv"
    fake.write_bytes(b"\x00\x01 neither a workbook nor text")
    with pytest.raises(InputError, match=r"^fake\.xlsx: not an XLSX workbook"):
        inspect_input(fake)


def test_duplicate_email_header_and_output_columns(tmp_path: Path) -> None:
    twice = tmp_path / "twice.csv"
    twice.write_text("email,email\na@b.co,c@d.co\n")
    with pytest.raises(InputError, match=r"^twice\.csv: 2 columns are named 'email'; rename"):
        inspect_input(twice)
    again = tmp_path / "again.csv"
    again.write_text("email,email_result\na@b.co,risky\n")
    with pytest.raises(InputError, match=r"^again\.csv: already has a column named email_result"):
        inspect_input(again)


# ----------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("email\na@b.co\n")
    b.write_text("email\na@b.co\n")
    fa, fb = fingerprint(inspect_input(a)), fingerprint(inspect_input(b))
    assert fa == fb and len(fa) == 40
    b.write_text("email\na@b.cO\n")
    assert fingerprint(inspect_input(b)) != fa


def test_gzip_fingerprint_is_of_the_file() -> None:
    spec = inspect_input(DATA / "gzip.csv.gz")
    assert fingerprint(spec) != fingerprint(inspect_input(DATA / "quoted.csv"))
    assert gzip.decompress((DATA / "gzip.csv.gz").read_bytes()).startswith(b"email,name")

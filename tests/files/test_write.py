"""Output paths and checks, and every reader's file through read -> enrich -> write."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ample_batch.errors import InputError
from ample_batch.files.inspect import inspect_input
from ample_batch.files.join import enrich_batches, enrich_file
from ample_batch.files.output import check_output, default_output_path, partial_path, write_output
from ample_batch.files.parquet import _as_read, dictionary_encoded
from ample_batch.files.spec import InputSpec
from ample_batch.files.stream import iter_batches
from ample_batch.files.verdicts import Verdicts

VERDICTS = Verdicts.from_rows(
    [
        ("ana@example.com", "deliverable", False),
        ("bob@example.com", "risky", True),
        ("zoe@example.com", "deliverable", False),
        ("mueller@example.de", "deliverable", True),
        ("a@example.com", "undeliverable", None),
        ("cy@example.com", "unknown", None),
    ]
)


def enrich(name: str, tmp_path: Path, out: str, **options: str) -> Path:
    spec = inspect_input(DATA / name, **options)  # type: ignore[arg-type]
    target = tmp_path / out
    enrich_file(spec, VERDICTS, target)
    return target


# ------------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("given_path", "default", "partial"),
    [
        ("in/leads.csv", "in/leads.validated.csv", "in/leads.validated.partial.csv"),
        ("leads.CSV.GZ", "leads.validated.CSV.GZ", "leads.validated.partial.CSV.GZ"),
        ("a.b.parquet", "a.b.validated.parquet", "a.b.validated.partial.parquet"),
        ("x.xlsx", "x.validated.xlsx", "x.validated.partial.xlsx"),
        ("t.tsv", "t.validated.tsv", "t.validated.partial.tsv"),
    ],
)
def test_output_paths(given_path: str, default: str, partial: str) -> None:
    assert default_output_path(Path(given_path)) == Path(default)
    assert partial_path(Path(default)) == Path(partial)


def test_check_output(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    check_output(spec, tmp_path / "ok.parquet")
    with pytest.raises(
        InputError,
        match=r"directory .*missing does not exist; create it or pick "
        r"another -o$",
    ):
        check_output(spec, tmp_path / "missing" / "out.csv")
    with pytest.raises(InputError, match=r"quoted\.csv: is the input file; choose another -o$"):
        check_output(spec, DATA / "quoted.csv")
    link = tmp_path / "link.csv"
    link.symlink_to(DATA / "quoted.csv")
    with pytest.raises(InputError, match=r"link\.csv: is the input file; choose another -o$"):
        check_output(spec, link)
    with pytest.raises(
        InputError,
        match=r"^cannot write out\.json: unknown output extension "
        r"\.json; use \.csv, \.tsv",
    ):
        check_output(spec, tmp_path / "out.json")
    with pytest.raises(
        InputError,
        match=r"^out\.xlsx: 1,048,576 rows do not fit in an XLSX sheet "
        r"\(at most 1,048,575\); write \.csv or \.parquet instead$",
    ):
        check_output(spec, tmp_path / "out.xlsx", rows=1_048_576)
    check_output(spec, tmp_path / "out.xlsx", rows=1_048_575)
    with pytest.raises(InputError, match=r"is a directory; give a file name for -o$"):
        check_output(spec, tmp_path)


# ---------------------------------------------------------------- CSV, byte for byte


def test_quoted_cells_round_trip(tmp_path: Path) -> None:
    out = enrich("quoted.csv", tmp_path, "out.csv")
    assert out.read_bytes() == (
        b"id,email,notes,zip,score,email_result,email_catch_all\n"
        b'1,ana@example.com,"line one\nline two",00123,NA,deliverable,false\n'
        b'2,  Bob@Example.COM  ,"she said ""hi"", then left",-0,null,risky,true\n'
        b"3,,  padded  ,,1e5,no_email,\n"  # quoting only where needed: the padding stays
        b'4,Dee <dee@example.com>,"crlf\r\ninside",007,,pending,\n'
    )


def test_bom_and_crlf_are_kept(tmp_path: Path) -> None:
    out = enrich("bom_crlf.csv", tmp_path, "out.csv")
    assert (
        out.read_bytes()
        == (
            "\ufeffName,Email,Zip,email_result,email_catch_all\r\n"
            "Zoë,zoe@example.com,00123,deliverable,false\r\n"
            "José,JOSE@Example.com ,,pending,\r\n"
        ).encode()
    )


def test_cp1252_semicolons_come_back_as_utf8_with_a_bom(tmp_path: Path) -> None:
    # Excel reads a CSV without a BOM as ANSI (cp1252): the BOM makes it read UTF-8.
    out = enrich("semicolon_cp1252.csv", tmp_path, "out.csv")
    assert out.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert (
        out.read_bytes()
        == (
            "\ufeffNom;E-mail;Ville;email_result;email_catch_all\r\n"
            "Müller;mueller@example.de;Zürich;deliverable;true\r\n"
            "Renée;;Montréal;no_email;\r\n"
        ).encode()
    )


@pytest.mark.parametrize(
    ("name", "out", "expected"),
    [
        (
            "tabs.tsv",
            "out.tsv",
            b"name\temail\tnote\temail_result\temail_catch_all\n"
            b"Ana\tana@example.com\tcomma, inside\tdeliverable\tfalse\n"
            b'Bo\tbo@example\t"tab\there"\tinvalid_syntax\t\n',
        ),
        (
            "pipes.txt",
            "out.txt",
            b"id|email|score|email_result|email_catch_all\n"
            b"001|a@example.com|1e5|undeliverable|\n002|NA|-0|invalid_syntax|\n",
        ),
        (
            "blank_lines.csv",
            "out.csv",
            b"email,name,email_result,email_catch_all\na@example.com,A,undeliverable,\n"
            b",,no_email,\nb@example.com,B,pending,\n",
        ),
        (
            "single_column.csv",
            "out.csv",
            b"email,email_result,email_catch_all\na@example.com,undeliverable,\n,no_email,\n"
            b"B@example.com,pending,\n",
        ),
        (
            "duplicate_header.csv",
            "out.csv",
            b"Name,Email,Name,email_result,email_catch_all\n"
            b"Ana,ana@example.com,Ana B.,deliverable,false\n",
        ),
        (
            "formula.csv",
            "out.csv",
            b"email,company,email_result,email_catch_all\n"
            b'a@example.com,"=HYPERLINK(""http://x"")",undeliverable,\n',
        ),
        (
            "quoted.csv",
            "out.tsv",
            b"id\temail\tnotes\tzip\tscore\temail_result\temail_catch_all\n"
            b'1\tana@example.com\t"line one\nline two"\t00123\tNA\tdeliverable\tfalse\n'
            b'2\t  Bob@Example.COM  \t"she said ""hi"", then left"\t-0\tnull\trisky\ttrue\n'
            b"3\t\t  padded  \t\t1e5\tno_email\t\n"
            b'4\tDee <dee@example.com>\t"crlf\r\ninside"\t007\t\tpending\t\n',
        ),
    ],
)
def test_text_round_trips(name: str, out: str, expected: bytes, tmp_path: Path) -> None:
    assert enrich(name, tmp_path, out).read_bytes() == expected


def test_gzip_in_and_out(tmp_path: Path) -> None:
    out = enrich("gzip.csv.gz", tmp_path, "out.csv.gz")
    assert gzip.decompress(out.read_bytes()) == (
        b"email,name,email_result,email_catch_all\na@example.com,Ana,undeliverable,\n"
        b'b@example.com,"B, b",pending,\n'
    )


def test_parquet_to_csv_renders_typed_cells(tmp_path: Path) -> None:
    out = enrich("typed.parquet", tmp_path, "out.csv")
    assert out.read_text() == (
        "id,email,seen,tags,address,score,segment,email_result,email_catch_all\n"
        '1,a@example.com,2024-01-02 03:04:05.000000+0000,"[""vip"", ""eu""]",'
        '"{""city"": ""Lisboa"", ""zip"": ""01000""}",1.5,smb,undeliverable,\n'
        "2,mailto:B@example.com,,[],,,ent,pending,\n"
        '3,,2025-06-07 01:00:00.000000+0100,,"{""city"": null, ""zip"": ""00123""}",-0,smb,'
        "no_email,\n"
    )


# -------------------------------------------------------------------------- Parquet


def test_parquet_schema_is_kept_exactly(tmp_path: Path) -> None:
    out = enrich("typed.parquet", tmp_path, "out.parquet")
    source = pq.read_table(DATA / "typed.parquet")
    result = pq.read_table(out)
    expected_schema = source.schema.append(pa.field("email_result", pa.string())).append(
        pa.field("email_catch_all", pa.bool_())
    )
    assert result.schema.equals(expected_schema, check_metadata=True)
    assert result.schema.metadata[b"origin"] == b"warehouse export"
    assert result.select(source.column_names).equals(source)
    assert result.column("email_result").to_pylist() == ["undeliverable", "pending", "no_email"]
    assert result.column("email_catch_all").to_pylist() == [None, None, None]


def test_parquet_nulls(tmp_path: Path) -> None:
    result = pq.read_table(enrich("nulls.parquet", tmp_path, "out.parquet"))
    assert result.column("email").to_pylist() == ["a@example.com", None, "B@Example.com", ""]
    assert result.column("name").to_pylist() == ["A", "B", None, "D"]
    assert result.column("email_result").to_pylist() == [
        "undeliverable",
        "no_email",
        "pending",
        "no_email",
    ]


def test_parquet_dictionary_only_where_values_repeat(tmp_path: Path) -> None:
    rows = 1_000
    source = pa.table(
        {
            "email": [f"lead{i}@example.com" for i in range(rows)],
            "country": ["PT", "DE", "FR", "US"] * (rows // 4),
            "tags": [["a", "b"]] * rows,
        }
    )
    pq.write_table(source, tmp_path / "in.parquet")
    spec = inspect_input(tmp_path / "in.parquet")
    enrich_file(spec, VERDICTS, tmp_path / "out.parquet")
    assert _dictionary_pages(tmp_path / "out.parquet") == {
        "email": False,
        "country": True,
        "tags.list.element": True,
        "email_result": True,
        "email_catch_all": False,  # Parquet never dictionary-encodes booleans
    }
    assert pq.read_table(tmp_path / "out.parquet").select(source.column_names).equals(source)


def _dictionary_pages(path: Path) -> dict[str, bool]:
    group = pq.ParquetFile(path).metadata.row_group(0)
    return {
        group.column(i).path_in_schema: group.column(i).has_dictionary_page
        for i in range(group.num_columns)
    }


def test_dictionary_encoded_text_is_written_as_read(tmp_path: Path) -> None:
    rows = 1_000
    country = pa.field("country", pa.string(), metadata={b"source": b"crm"})
    source = pa.table(
        {
            "email": [f"lead{i}@example.com" for i in range(rows)],
            "country": pa.array([None, "PT", "DE", "Österreich"] * (rows // 4)),
            "plain": ["x", "y"] * (rows // 2),
            "wide": pa.array(["a", "b"] * (rows // 2), pa.large_string()),
            "score": list(range(rows)),
        },
        schema=pa.schema(
            [
                pa.field("email", pa.string()),
                country,
                pa.field("plain", pa.string(), nullable=False),
                pa.field("wide", pa.large_string()),
                pa.field("score", pa.int64()),
            ],
            metadata={b"origin": b"warehouse export"},
        ),
    )
    # Several row groups, each with its own dictionary, and not a multiple of the batch.
    pq.write_table(
        source,
        tmp_path / "in.parquet",
        row_group_size=300,
        use_dictionary=["email", "country", "wide"],
    )
    spec = inspect_input(tmp_path / "in.parquet")
    assert dictionary_encoded(spec) == ("country",)  # not the email, nor plain or wide text
    enrich_file(spec, VERDICTS, tmp_path / "out.parquet")
    result = pq.read_table(tmp_path / "out.parquet")
    expected = source.schema.append(pa.field("email_result", pa.string())).append(
        pa.field("email_catch_all", pa.bool_())
    )
    assert result.schema.equals(expected, check_metadata=True)
    assert result.select(source.column_names).equals(source)
    assert _dictionary_pages(tmp_path / "out.parquet")["country"]
    # The same file as when every column is read plain and encoded again.
    plain = tmp_path / "plain.parquet"
    write_output(spec, enrich_batches(spec, VERDICTS), plain)
    assert pq.ParquetFile(tmp_path / "out.parquet").schema.equals(pq.ParquetFile(plain).schema)
    assert pq.read_table(plain).equals(result)


def test_parquet_row_groups_are_the_inputs(tmp_path: Path) -> None:
    # Groups of 150,000 do not divide into the join's 131,072-row batches.
    rows = 400_000
    source = pa.table(
        {"email": [f"lead{i % 5000}@example.com" for i in range(rows)], "n": range(rows)}
    )
    pq.write_table(source, tmp_path / "in.parquet", row_group_size=150_000)
    enrich_file(inspect_input(tmp_path / "in.parquet"), VERDICTS, tmp_path / "out.parquet")
    meta = pq.read_metadata(tmp_path / "out.parquet")
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert groups == [150_000, 150_000, 100_000]
    assert pq.read_table(tmp_path / "out.parquet").select(["email", "n"]).equals(source)


def test_dictionaries_stay_dictionaries_when_row_groups_differ(tmp_path: Path) -> None:
    # Output groups of the first one's size straddle the input's later groups, each with its
    # own dictionary: every output group must still be dictionary-encoded, not plain.
    sizes = [200_000, 150_000, 200_000]
    schema = pa.schema([("email", pa.string()), ("country", pa.string())])
    with pq.ParquetWriter(tmp_path / "in.parquet", schema) as writer:
        for i, size in enumerate(sizes):
            countries = [f"{name}{i}" for name in ("Portugal", "Deutschland", "France")]
            column = (countries * (size // 3 + 1))[:size]
            writer.write_table(
                pa.table({"email": ["a@example.com"] * size, "country": column}),
                row_group_size=size,
            )
    spec = inspect_input(tmp_path / "in.parquet")
    assert dictionary_encoded(spec) == ("country",)
    enrich_file(spec, VERDICTS, tmp_path / "out.parquet")
    meta = pq.read_metadata(tmp_path / "out.parquet")
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    assert [g.num_rows for g in groups] == [200_000, 200_000, 150_000]
    # Plain values would take ~12 bytes a row; dictionary indices take under one.
    assert all(g.column(1).total_uncompressed_size < g.num_rows for g in groups)
    source = pq.read_table(tmp_path / "in.parquet")
    assert pq.read_table(tmp_path / "out.parquet").select(source.column_names).equals(source)


@pytest.mark.parametrize(
    ("other", "kept"),
    [(pa.date64(), True), (pa.list_(pa.int32()), True), (pa.month_day_nano_interval(), False)],
)
def test_dictionary_read_text_is_decoded_unless_the_file_comes_out_the_same(
    other: pa.DataType, kept: bool
) -> None:
    # Parquet cannot hold the interval: the plain writer must be the one to say so.
    schema = pa.schema([pa.field("country", pa.string()), pa.field("other", other)])
    read = pa.schema([pa.field("country", pa.dictionary(pa.int32(), pa.string())), schema[1]])
    taken, decode = _as_read(schema, read)
    assert (taken, decode) == ((read, []) if kept else (schema, [0]))


def test_csv_to_parquet(tmp_path: Path) -> None:
    result = pq.read_table(enrich("quoted.csv", tmp_path, "out.parquet"))
    assert result.schema.types == [pa.string()] * 6 + [pa.bool_()]
    assert result.column("notes").to_pylist()[3] == "crlf\r\ninside"
    assert result.column("zip").to_pylist() == ["00123", "-0", "", "007"]
    assert result.column("email_catch_all").to_pylist() == [False, True, None, None]


# ----------------------------------------------------------------------------- XLSX


def test_xlsx_to_xlsx_keeps_types_and_text(tmp_path: Path) -> None:
    out = enrich("leads.xlsx", tmp_path, "out.xlsx")
    spec = inspect_input(DATA / "leads.xlsx")
    source = pa.Table.from_batches(list(iter_batches(spec)))
    reread = dataclasses.replace(
        spec, path=out, columns=[*spec.columns, "email_result", "email_catch_all"]
    )
    back = pa.Table.from_batches(list(iter_batches(reread)))
    assert back.select(source.column_names).equals(source)
    assert back.column("Note").to_pylist()[0] == "=not a formula"  # text, not a formula
    assert back.column("email_result").to_pylist() == ["deliverable", "no_email", "unknown"]
    assert back.column("email_catch_all").to_pylist() == ["false", "", ""]


def test_csv_to_xlsx_formula_stays_text(tmp_path: Path) -> None:
    out = enrich("formula.csv", tmp_path, "out.xlsx")
    from openpyxl import load_workbook

    sheet = load_workbook(out).active
    assert sheet is not None
    cell = sheet["B2"]
    assert (cell.value, cell.data_type) == ('=HYPERLINK("http://x")', "s")


def test_xlsx_to_csv(tmp_path: Path) -> None:
    out = enrich("leads.xlsx", tmp_path, "out.csv")
    assert out.read_text() == (
        "Name,Email,Zip,Score,Signed up,Active,Note,email_result,email_catch_all\n"
        "Zoë,zoe@example.com,00123,5,2024-01-02 03:04:05.000000,true,=not a formula,deliverable,"
        "false\n"
        "Bo,,NA,7.5,2024-02-03 00:00:00.000000,false,,no_email,\n"
        'Cy,Cy <CY@example.com>,,,,,"two\nlines",unknown,\n'
    )


def test_xlsx_row_limit_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ample_batch.files.xlsx.XLSX_MAX_ROWS", 2)
    spec = inspect_input(DATA / "quoted.csv")
    target = tmp_path / "out.xlsx"
    with pytest.raises(InputError, match=r"^over 2 rows do not fit in an XLSX sheet; write "):
        write_output(spec, enrich_batches(spec, VERDICTS), target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    target = tmp_path / "out.csv"
    target.write_text("previous run\n")

    def boom() -> Iterator[pa.RecordBatch]:
        yield from enrich_batches(spec, VERDICTS)
        raise RuntimeError("disk on fire")

    for name in ("out.csv", "out.parquet", "out.xlsx", "out.csv.gz"):
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_output(spec, boom(), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert target.read_text() == "previous run\n"


def test_output_replaces_atomically(tmp_path: Path) -> None:
    spec = inspect_input(DATA / "quoted.csv")
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    assert write_output(spec, enrich_batches(spec, VERDICTS), target) == 4
    assert target.read_bytes().startswith(b"id,email,notes")
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------- properties

cells = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
exported_cells = st.lists(
    st.characters(codec="utf-8", exclude_categories=["Cc"])
    | st.sampled_from(["\t", "\n", "\r\n", '"', ",", ";", "|"]),
    max_size=12,
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(min_value=1, max_value=4),
    data=st.data(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_any_table_of_text_round_trips_through_csv(
    width: int, data: st.DataObject, delimiter: str, newline: str
) -> None:
    names = [f"c{i}" for i in range(width)]
    rows = data.draw(
        st.lists(st.lists(cells, min_size=width, max_size=width), min_size=1, max_size=8)
    )
    table = pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.csv"
        spec = InputSpec(
            path=out,
            format="csv",
            delimiter=delimiter,
            encoding="utf-8",
            bom=False,
            compression=None,
            sheet=None,
            email_column="c0",
            columns=names,
            warnings=[],
            newline=newline,
        )
        assert write_output(spec, iter(table.to_batches()), out) == len(rows)
        back = pa.Table.from_batches(list(iter_batches(dataclasses.replace(spec))))
    assert back.column_names == names
    assert back.to_pylist() == table.to_pylist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(min_value=0, max_value=3),
    data=st.data(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_any_exported_csv_is_detected_and_comes_back_cell_for_cell(
    width: int, data: st.DataObject, delimiter: str, newline: str, bom: bool
) -> None:
    # As an exporter writes it (Python's csv, minimal quoting), read by detection alone.
    # No control characters but tab and line breaks: a few are "binary" to the detector, and
    # Python 3.11's writer leaves a lone CR unquoted.
    names = ["email", *(f"c{i}" for i in range(width))]
    email = st.sampled_from(["a@x.co", " B@X.CO ", "", "nope", "mailto:c@y.org", "d@z"])
    rows = data.draw(
        st.lists(st.tuples(email, *([exported_cells] * width)).map(list), min_size=1, max_size=8)
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "leads.csv", Path(tmp) / "out.csv"
        with open(src, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
            csv.writer(f, delimiter=delimiter, lineterminator=newline).writerows([names, *rows])
        spec = inspect_input(src)
        # One column has no delimiter to detect: any reads it the same.
        assert (spec.delimiter if width else delimiter, spec.bom) == (delimiter, bom)
        assert spec.email_column == "email"
        enrich_file(spec, VERDICTS, out)
        with open(out, encoding="utf-8", newline="") as f:
            text = f.read()
    assert text.startswith("\ufeff") == bom
    body = io.StringIO(text.removeprefix("\ufeff"), newline="")
    back = list(csv.reader(body, delimiter=spec.delimiter or ","))
    assert back[0] == [*names, "email_result", "email_catch_all"]
    assert [r[:-2] for r in back[1:]] == rows


@pytest.mark.parametrize(
    ("content", "bom"),
    [
        ("email,name\na@example.com,Renée\n".encode("cp1252"), True),  # Excel on Windows
        ("email,name\na@example.com,Renée\n".encode(), False),  # UTF-8 stays as it was
        (b"email,name\na@example.com,Ana\n", False),  # ASCII
    ],
    ids=["cp1252", "utf8", "ascii"],
)
def test_a_bom_exactly_when_the_input_was_not_utf8(
    tmp_path: Path, content: bytes, bom: bool
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    for out in (tmp_path / "out.csv", tmp_path / "out.csv.gz"):
        enrich_file(inspect_input(src), VERDICTS, out)
        data = out.read_bytes()
        data = gzip.decompress(data) if out.suffix == ".gz" else data
        assert data.startswith(b"\xef\xbb\xbf") is bom
        assert data.removeprefix(b"\xef\xbb\xbf").decode("utf-8").startswith("email,name,")

"""Regenerate the tiny trap files in this folder: `python tests/data/make_data.py`.

Each file is one trap a real lead list has shown; tests/test_*.py read them through every
reader and check each cell. The text files are written byte for byte from here so that what a
file contains is readable in one place.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent

TEXT: dict[str, bytes] = {
    # Excel's "CSV UTF-8": a BOM and CRLF line ends.
    "bom_crlf.csv": (
        "\ufeffName,Email,Zip\r\nZoë,zoe@example.com,00123\r\nJosé,JOSE@Example.com ,\r\n"
    ).encode(),
    # Excel in a comma-decimal locale: semicolons, cp1252.
    "semicolon_cp1252.csv": (
        "Nom;E-mail;Ville\r\nMüller;mueller@example.de;Zürich\r\nRenée;;Montréal\r\n"
    ).encode("cp1252"),
    "tabs.tsv": (
        b'name\temail\tnote\nAna\tana@example.com\tcomma, inside\nBo\tbo@example\t"tab\there"\n'
    ),
    "pipes.txt": b"id|email|score\n001|a@example.com|1e5\n002|NA|-0\n",
    # Cells that must come back byte for byte: quoted newlines and quotes, padding, NA, null.
    "quoted.csv": (
        b"id,email,notes,zip,score\n"
        b'1,ana@example.com,"line one\nline two",00123,NA\n'
        b'2,  Bob@Example.COM  ,"she said ""hi"", then left",-0,null\n'
        b'3,,"  padded  ",,1e5\n'
        b'4,"Dee <dee@example.com>","crlf\r\ninside",007,\n'
    ),
    "blank_lines.csv": b"email,name\na@example.com,A\n\nb@example.com,B\n",
    "single_column.csv": b"email\na@example.com\n\nB@example.com\n",
    "ragged.csv": b'email,name\na@example.com,A\n"b@example.com","B\nB"\nc@example.com,C,extra\n',
    "ragged_short.csv": b"email,name,city\na@example.com,A,X\nb@example.com,B\n",
    "header_only.csv": b"email,name\n",
    "empty.csv": b"",
    "duplicate_header.csv": b"Name,Email,Name\nAna,ana@example.com,Ana B.\n",
    "two_emails.csv": b"Name,Work Email,Personal Email\nAna,ana@acme.com,ana@gmail.com\n",
    "no_email.csv": b"Name,City\nAna,Lisbon\nBo,Porto\n",
    "content_email.csv": b"Name,Contact\nAna,ana@example.com\nBo,bo@example.com\nCy,\n",
    "not_utf8_late.csv": b"email,name\n" + b"a@example.com,Ana\n" * 3 + b"b@example.com,Ren\xe9e\n",
    "garbage.csv": bytes(range(256)) * 4,
    "not_parquet.parquet": b"PAR0\x00\x01\x02 not a Parquet file\x00",
    # Text behind names that promise binary formats: read as the CSV it is, with a warning.
    "text_named.parquet": b"email,name\na@example.com,A\n",
    "unpacked.csv.gz": b"email;name\na@example.com;A\n",
    "unknown.json": b'{"email": "a@example.com"}\n',
    "formula.csv": b'email,company\na@example.com,=HYPERLINK("http://x")\n',
}


def parquet_files() -> None:
    nulls = pa.table(
        {
            "email": pa.array(["a@example.com", None, "B@Example.com", ""], pa.string()),
            "name": pa.array(["A", "B", None, "D"], pa.string()),
        }
    )
    pq.write_table(nulls, HERE / "nulls.parquet")
    schema = pa.schema(
        [
            pa.field("id", pa.int32(), nullable=False),
            pa.field("email", pa.large_string()),
            pa.field("seen", pa.timestamp("us", tz="Europe/Lisbon")),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("address", pa.struct([("city", pa.string()), ("zip", pa.string())])),
            pa.field("score", pa.float64()),
            pa.field("segment", pa.dictionary(pa.int8(), pa.string())),
        ],
        metadata={"origin": "warehouse export"},
    )
    typed = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "email": pa.array(["a@example.com", "mailto:B@example.com", None], pa.large_string()),
            "seen": pa.array(
                [
                    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                    None,
                    dt.datetime(2025, 6, 7, tzinfo=dt.UTC),
                ],
                pa.timestamp("us", tz="Europe/Lisbon"),
            ),
            "tags": pa.array([["vip", "eu"], [], None], pa.list_(pa.string())),
            "address": pa.array(
                [{"city": "Lisboa", "zip": "01000"}, None, {"city": None, "zip": "00123"}],
                pa.struct([("city", pa.string()), ("zip", pa.string())]),
            ),
            "score": pa.array([1.5, None, -0.0]),
            "segment": pa.array(["smb", "ent", "smb"])
            .dictionary_encode()
            .cast(pa.dictionary(pa.int8(), pa.string())),
        },
        schema=schema,
    )
    pq.write_table(typed, HERE / "typed.parquet")
    full = (HERE / "typed.parquet").read_bytes()
    (HERE / "truncated.parquet").write_bytes(full[: len(full) // 2])
    pq.write_table(nulls.slice(0, 0), HERE / "no_rows.parquet")


def xlsx_files() -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Leads"
    sheet.append(["Name", "Email", "Zip", "Score", "Signed up", "Active", "Note"])
    sheet.append(
        [
            "Zoë",
            "zoe@example.com",
            "00123",
            5,
            dt.datetime(2024, 1, 2, 3, 4, 5),
            True,
            "=not a formula",
        ]
    )
    sheet.append(["Bo", None, "NA", 7.5, dt.datetime(2024, 2, 3), False, None])
    sheet.append(["Cy", "Cy <CY@example.com>", "", None, None, None, "two\nlines"])
    sheet["G2"].data_type = "s"
    other = book.create_sheet("Other")
    other.append(["contact", "city"])
    other.append(["x@example.com", "Porto"])
    book.create_sheet("Empty")
    book.save(HERE / "leads.xlsx")
    summary_first()
    two_sheets()


def summary_first() -> None:
    """A sales-ops workbook: a summary sheet (figures, a formula, a date) before `Leads`, and a
    notes sheet after it. The output must keep both and validate `Leads`."""
    from openpyxl import Workbook

    book = Workbook()
    summary = book.active
    summary.title = "Summary"
    summary.append(["Campaign", "Spring outreach"])
    summary.append(["Owner", "Núria Peña"])
    summary.append(["Exported", dt.date(2026, 3, 1)])
    summary["B3"].number_format = "yyyy-mm-dd"
    summary.append(["Leads", "=COUNTA(Leads!B:B)-1"])
    summary.append(["Note", "=not a formula"])
    summary["B5"].data_type = "s"
    leads = book.create_sheet("Leads")
    leads.append(["Name", "Email", "Company"])
    leads.append(["Núria Peña", "Núria Peña <nria@globex.io>", "Globex"])
    leads.append(["Max", "mailto:Max@Example.com", "Initech"])
    leads.append(["Blank", None, "Hooli"])
    notes = book.create_sheet("Notes")
    notes.append(["Call after 10:00", 3, 2.5, True])
    book.save(HERE / "summary_first.xlsx")


def two_sheets() -> None:
    """Two regions' leads in one workbook, each sheet with an `Email` column, two addresses
    on both: `--sheet East` (the default, the first) and `--sheet West` are two jobs, and the
    second buys only the three addresses the first did not."""
    from openpyxl import Workbook

    book = Workbook()
    east = book.active
    east.title = "East"
    east.append(["Name", "Email", "Region"])
    for name in ("ana", "bo", "cy", "dee"):
        east.append([name.title(), f"{name}@east.example.com", "East"])
    west = book.create_sheet("West")
    west.append(["Name", "Email", "Region"])
    for name, domain in (("cy", "east"), ("dee", "east"), ("eve", "west"), ("fay", "west")):
        west.append([name.title(), f"{name}@{domain}.example.com", "West"])
    west.append(["Gus", "GUS@west.example.com ", "West"])
    west.append(["Nobody", None, "West"])
    book.save(HERE / "two_sheets.xlsx")


def main() -> None:
    for name, data in TEXT.items():
        (HERE / name).write_bytes(data)
    (HERE / "gzip.csv.gz").write_bytes(
        gzip.compress(b'email,name\na@example.com,Ana\nb@example.com,"B, b"\n', mtime=0)
    )
    (HERE / "corrupt.csv.gz").write_bytes(
        gzip.compress(b"email,name\n" + b"a@example.com,Ana\n" * 200, mtime=0)[:60]
    )
    parquet_files()
    xlsx_files()


if __name__ == "__main__":
    main()

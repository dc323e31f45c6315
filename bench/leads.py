"""Generate a realistic, messy CRM lead export for benchmarks and sample data.

Twelve columns, about 190 bytes a row, with the traps real exports carry: accented names,
quoted commas, quoted newlines and quotes in notes, phones and zips with leading zeros,
``NA`` cells, ~15% duplicate emails that differ only in case or surrounding spaces, ~2% blank
emails and ~1% addresses that can never be valid. Everything is vectorised (numpy + pyarrow),
so five million rows take seconds, and the same seed always gives the same bytes.

    python -m bench.leads bench/data/leads-1m.csv 1000000
    python -m bench.leads bench/data/leads-1m.parquet 1000000 --seed 7

The CSV is UTF-8 without a BOM, comma-separated, ``\\n`` line ends, quoted only where needed.
The Parquet file holds the same rows with ``created_at`` as a UTC timestamp and ``lead_score``
as a nullable int32 (how a warehouse would type them); every other column is a string.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = [
    "First Name",
    "Last Name",
    "Company",
    "Title",
    "Phone",
    "Email",
    "City",
    "Country",
    "Notes",
    "Zip",
    "created_at",
    "lead_score",
]

# (display name, ascii spelling used in email addresses)
FIRST = [
    ("James", "james"),
    ("Mary", "mary"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("François", "francois"),
    ("Łukasz", "lukasz"),
    ("Søren", "soren"),
    ("Ana", "ana"),
    ("Chloé", "chloe"),
    ("Jürgen", "jurgen"),
    ("Priya", "priya"),
    ("Wei", "wei"),
    ("Olga", "olga"),
    ("Seán", "sean"),
    ("Fatima", "fatima"),
    ("John", "john"),
    ("Linda", "linda"),
    ("Miguel", "miguel"),
    ("Inês", "ines"),
    ("Noah", "noah"),
    ("Emma", "emma"),
    ("Hiroshi", "hiroshi"),
    ("Ayşe", "ayse"),
    ("Björn", "bjorn"),
    ("Renée", "renee"),
    ("David", "david"),
    ("Sarah", "sarah"),
    ("Mohammed", "mohammed"),
    ("Élodie", "elodie"),
    ("Tomás", "tomas"),
    ("Katarzyna", "katarzyna"),
    ("Lars", "lars"),
    ("Giulia", "giulia"),
]
LAST = [
    ("Smith", "smith"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("O'Brien", "obrien"),
    ("Smith, Jr.", "smith"),
    ("Nowak", "nowak"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
    ("Johansson", "johansson"),
    ("Kowalski", "kowalski"),
    ("Fernández", "fernandez"),
    ("Tanaka", "tanaka"),
    ("Williams", "williams"),
    ("Brown, III", "brown"),
    ("Silva", "silva"),
    ("Jensen", "jensen"),
    ("Nguyen", "nguyen"),
    ("Özdemir", "ozdemir"),
    ("Lefèvre", "lefevre"),
    ("van der Berg", "vanderberg"),
    ("Ng", "ng"),
    ("Patel", "patel"),
    ("Lopez", "lopez"),
]
COMPANIES = [
    ("Acme, Inc.", "acme.com"),
    ("Globex", "globex.io"),
    ("Initech", "initech.com"),
    ("Umbrella Corp", "umbrella-corp.com"),
    ("Stark Industries", "stark.co"),
    ("Wayne Enterprises", "wayne.com"),
    ("Soylent", "soylent.net"),
    ("Hooli", "hooli.xyz"),
    ("Pied Piper", "piedpiper.com"),
    ("Vandelay Industries", "vandelay.co.uk"),
    ("Müller & Söhne GmbH", "mueller-soehne.de"),
    ("Société Générale", "socgen.fr"),
    ("Tyrell, Corp", "tyrell.com"),
    ("Cyberdyne Systems", "cyberdyne.ai"),
    ("N/A", "gmail.com"),
    ("", "outlook.com"),
    ("Freelance", "yahoo.com"),
]
TITLES = [
    "CEO",
    "CTO",
    "VP Sales",
    "Head of Growth",
    "Account Executive",
    "SDR",
    "Marketing Manager",
    "Director, Operations",
    "Founder & CEO",
    "Senior Software Engineer",
    "",
    "Procurement Lead",
    "COO",
    "Senior Account Executive, EMEA",
    "Head of Revenue Operations",
    "Chief of Staff",
]
CITIES = [
    "London",
    "São Paulo",
    "Zürich",
    "New York",
    "Lisbon",
    "Kraków",
    "München",
    "Paris",
    "Tokyo",
    "Austin",
    "Dublin",
    "Montréal",
    "",
    "Reykjavík",
    "Cape Town",
    "Berlin",
]
COUNTRIES = [
    "UK",
    "Brazil",
    "Switzerland",
    "USA",
    "Portugal",
    "Poland",
    "Germany",
    "France",
    "Japan",
    "Ireland",
    "Canada",
    "Iceland",
    "South Africa",
    "NA",
]
NOTES = [
    "Met at SaaStr, follow up in Q3 about the enterprise plan and the SSO add-on",
    'Said "call me after the 15th", prefers mornings; assistant screens all calls',
    "Line one of a pasted email signature\nline two: Head of Sales Ops, EMEA",
    "Interested; wants pricing for 50 seats\r\nand a security questionnaire (SOC 2)",
    "  padded note with spaces on both sides, exported as typed  ",
    "null",
    "1e5",
    "=not a formula, just a note that starts with an equals sign",
    'He said: "budget, maybe"\nthen hung up. Try again next quarter via LinkedIn.',
    "Referral from Ana at Globex; intro thread forwarded 2024-02-11, warm lead",
    "Downloaded the whitepaper twice; opened 4 of 5 nurture emails; no reply yet",
    "Churned customer from 2022 (pricing). Re-engage when the new tier ships.",
]
BAD_EMAILS = [
    "john.doe@",
    "@example.com",
    "no-at-sign.example.com",
    "a@@b.com",
    "first last@acme.com",
    "sales@localhost",
    "x@domain..com",
    "NA",
    "n/a",
    "test@test",
]
DOMAINS_FREE = ["gmail.com", "yahoo.com", "outlook.com", "proton.me", "icloud.com"]

_QUOTE_NEEDED = r'[,"\r\n]'


def _pick(rng: np.random.Generator, pool: list[str], n: int, p_blank: float = 0.0) -> pa.Array:
    arr = pa.array(pool, pa.string()).take(pa.array(rng.integers(0, len(pool), n)))
    if p_blank:
        arr = pc.if_else(pa.array(rng.random(n) < p_blank), "", arr)
    return arr


def _digits(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**width, n)), pa.string()), width, "0")


def _emails(
    rng: np.random.Generator, n: int, first_ascii: pa.Array, last_ascii: pa.Array, start: int
) -> pa.Array:
    """Unique base addresses, then duplicates, blanks and bad addresses over the top."""
    ids = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
    sep = pa.array([".", "_", ""], pa.string()).take(pa.array(rng.integers(0, 3, n)))
    domain = _pick(rng, [d for _, d in COMPANIES] + DOMAINS_FREE, n)
    local = pc.binary_join_element_wise(first_ascii, sep, last_ascii, ids, "")
    base = pc.binary_join_element_wise(local, domain, "@")
    # Some people type their own address with capitals.
    base = pc.if_else(pa.array(rng.random(n) < 0.05), pc.utf8_capitalize(base), base)

    # ~15% of rows repeat an earlier address of this chunk, as typed by someone else.
    roll = rng.random(n)
    dup = roll < 0.15
    source = (rng.random(n) * np.maximum(np.arange(n), 1)).astype(np.int64)
    copied = base.take(pa.array(source))
    variant = pa.array(rng.integers(0, 5, n).astype(np.int8))
    copied = pc.choose(
        variant,
        copied,
        pc.utf8_upper(copied),
        pc.binary_join_element_wise(" ", copied, ""),
        pc.binary_join_element_wise(copied, "  ", ""),
        pc.utf8_capitalize(copied),
    )
    emails = pc.if_else(pa.array(dup & (np.arange(n) > 0)), copied, base)
    blank = (roll >= 0.15) & (roll < 0.17)
    emails = pc.if_else(pa.array(blank), _pick(rng, ["", "", "", " "], n), emails)
    bad = (roll >= 0.17) & (roll < 0.18)
    return pc.if_else(pa.array(bad), _pick(rng, BAD_EMAILS, n), emails)


def lead_table(rows: int, *, seed: int = 0, start: int = 0) -> pa.Table:
    """`rows` leads as a table of text columns; `start` keeps addresses unique across chunks."""
    rng = np.random.default_rng([seed, start])
    n = rows
    fi = pa.array(rng.integers(0, len(FIRST), n))
    li = pa.array(rng.integers(0, len(LAST), n))
    first = pa.array([f for f, _ in FIRST]).take(fi)
    last = pa.array([s for s, _ in LAST]).take(li)
    first_ascii = pa.array([a for _, a in FIRST]).take(fi)
    last_ascii = pa.array([a for _, a in LAST]).take(li)
    phone = pc.binary_join_element_wise(
        _pick(rng, ["0", "+44 (0)", "+351 0", "00 1", "+49 (0)"], n),
        _digits(rng, n, 2),
        _digits(rng, n, 4),
        _digits(rng, n, 4),
        " ",
    )
    created = pc.strftime(
        pa.array(1_600_000_000 + rng.integers(0, 150_000_000, n), pa.timestamp("s")),
        format="%Y-%m-%dT%H:%M:%SZ",
    )
    score = pc.cast(pa.array(rng.integers(0, 101, n)), pa.string())
    score = pc.if_else(pa.array(rng.random(n) < 0.04), _pick(rng, ["", "NA"], n), score)
    notes = pc.if_else(pa.array(rng.random(n) < 0.2), "", _pick(rng, NOTES, n))
    columns = [
        first,
        last,
        _pick(rng, [c for c, _ in COMPANIES], n),
        _pick(rng, TITLES, n),
        phone,
        _emails(rng, n, first_ascii, last_ascii, start),
        _pick(rng, CITIES, n),
        _pick(rng, COUNTRIES, n),
        notes,
        _digits(rng, n, 5),
        created,
        score,
    ]
    return pa.table(columns, names=COLUMNS)


def _csv_quote(col: pa.Array) -> pa.Array:
    escaped = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(col, _QUOTE_NEEDED), escaped, col)


def csv_bytes(table: pa.Table, *, header: bool) -> bytes:
    """The table as RFC 4180 CSV text, quoting only the cells that need it."""
    cols = [_csv_quote(c.combine_chunks()) for c in table.columns]
    lines = pc.binary_join_element_wise(*cols, ",")
    # A StringArray of "row\n" values: its data buffer is the file body, no Python join.
    with_eol = pc.binary_join_element_wise(lines, "\n", "")
    offsets = np.frombuffer(with_eol.buffers()[1], dtype=np.int32)
    first, last = offsets[with_eol.offset], offsets[with_eol.offset + len(with_eol)]
    data = with_eol.buffers()[2].to_pybytes()[first:last] if len(with_eol) else b""
    head = (",".join(_csv_quote(pa.array(table.column_names)).to_pylist()) + "\n").encode()
    return (head if header else b"") + data


def _typed(table: pa.Table) -> pa.Table:
    created = pc.strptime(table["created_at"], format="%Y-%m-%dT%H:%M:%SZ", unit="ms")
    created = created.cast(pa.timestamp("ms", tz="UTC"))
    score = pc.if_else(
        pc.match_substring_regex(table["lead_score"], r"^\d+$"),
        table["lead_score"],
        pa.scalar(None, pa.string()),
    ).cast(pa.int32())
    table = table.set_column(table.schema.get_field_index("created_at"), "created_at", created)
    return table.set_column(table.schema.get_field_index("lead_score"), "lead_score", score)


def generate_leads(
    path: Path, rows: int, *, seed: int = 0, fmt: Literal["csv", "parquet"] = "csv"
) -> None:
    """Write `rows` generated leads to `path` as CSV or Parquet, in chunks of 500,000 rows.

    >>> generate_leads(Path("/tmp/leads.csv"), 1000, seed=1)
    """
    chunk = 500_000
    path = Path(path)
    if fmt == "csv":
        with path.open("wb") as out:
            for i, start in enumerate(range(0, max(rows, 1), chunk)):
                n = min(chunk, rows - start)
                out.write(csv_bytes(lead_table(max(n, 0), seed=seed, start=start), header=i == 0))
    elif fmt == "parquet":
        writer = None
        try:
            for start in range(0, max(rows, 1), chunk):
                table = _typed(lead_table(max(min(chunk, rows - start), 0), seed=seed, start=start))
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    else:
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.leads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out", type=Path, help="output file; .parquet writes Parquet, else CSV")
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fmt: Literal["csv", "parquet"] = "parquet" if args.out.suffix == ".parquet" else "csv"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    generate_leads(args.out, args.rows, seed=args.seed, fmt=fmt)


if __name__ == "__main__":
    main()


# Hand-made rows for sample_data/: each one a trap a real export has shown us.
TRAPS = [
    {"Email": "mailto:Maria.Lopez@Globex.io", "Notes": "pasted from a mailto: link"},
    {"Email": "Chloé Dubois <chloe.dubois@socgen.fr>", "Notes": "display name and address"},
    {"Email": "NA", "Notes": "the CRM's way of saying no email", "lead_score": "NA"},
    {"Email": "ana+newsletter@proton.me", "Notes": "plus-addressing is valid"},
    {"Email": "  MARIA.LOPEZ@GLOBEX.IO ", "Notes": "same person as the mailto: row"},
    {"Email": "", "Notes": "blank email"},
    {"Email": "bob@localhost", "Notes": "no dot in the domain: never deliverable"},
    {
        "Email": "zoe.muller@mueller-soehne.de",
        "Zip": "00501",
        "Phone": "007 123",
        "Notes": 'Two lines:\n"quoted", and a comma',
    },
    {
        "Email": "mallory@hooli.xyz",
        "Company": '=HYPERLINK("http://example.com")',
        "Notes": "a cell that looks like a formula stays text",
    },
    {"Email": "MAILTO:Sales@Acme.com?subject=Hello", "lead_score": "1e5", "Notes": "null"},
]


def sample_table(rows: int = 2000, *, seed: int = 2024) -> pa.Table:
    """The sample_data/ rows: generated leads with TRAPS spread among them."""
    table = lead_table(rows - len(TRAPS), seed=seed)
    base = table.slice(0, len(TRAPS)).to_pylist()
    traps = [{**row, **trap} for row, trap in zip(base, TRAPS, strict=True)]
    body = table.to_pylist()
    for i, trap in enumerate(traps):
        body.insert(3 + i * (rows // len(TRAPS)), trap)
    return pa.Table.from_pylist(body, schema=table.schema)


def write_sample(directory: Path) -> None:
    """sample_data/leads.csv and leads.parquet: the same 2,000 rows."""
    table = sample_table()
    (directory / "leads.csv").write_bytes(csv_bytes(table, header=True))
    pq.write_table(_typed(table), directory / "leads.parquet")

"""Bad input, through the real command: one line on stderr, exit 2, no credit, no file left.

Each case runs `validate` against a live fake API with a valid key, so a case that slipped
through would show up as spent credits or a new file.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import FakeInThread, cli, lead_rows, write_leads


def csv_file(text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Callable:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(text.encode(encoding))
        return [str(d / name)]

    return make


def raw_file(data: bytes, name: str) -> Callable:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(data)
        return [str(d / name)]

    return make


def good(*extra: str, name: str = "leads.csv") -> Callable:
    def make(d: Path) -> list[str]:
        write_leads(d / name, lead_rows(20))
        return [str(d / name), *[e.replace("{d}", str(d)) for e in extra]]

    return make


def truncated_parquet(d: Path) -> list[str]:
    table = pa.table({"Email": [f"u{i}@x.co" for i in range(2000)]})
    pq.write_table(table, d / "leads.parquet")
    data = (d / "leads.parquet").read_bytes()
    (d / "leads.parquet").write_bytes(data[: len(data) // 2])
    return [str(d / "leads.parquet")]


def huge_for_xlsx(d: Path) -> list[str]:
    with gzip.open(d / "big.csv.gz", "wt") as handle:
        handle.write("Email\n")
        handle.write("a@example.com\n" * 1_048_576)
    return [str(d / "big.csv.gz"), "-o", str(d / "big.xlsx")]


def directory(d: Path) -> list[str]:
    (d / "folder.csv").mkdir()
    return [str(d / "folder.csv")]


CASES: list[tuple[str, Callable, str]] = [
    ("missing file", lambda d: [str(d / "nope.csv")], r"nope\.csv.*(no such file|not found)"),
    ("a directory", directory, r"directory"),
    ("empty file", csv_file(""), r"empty"),
    ("header only", csv_file("Name,Email\n"), r"no rows"),
    ("binary garbage", raw_file(bytes(range(256)) * 40, "leads.csv"), r"binary|not text"),
    ("not parquet", raw_file(b"PAR0\x00\x01garbage", "leads.parquet"), r"not a (valid )?parquet"),
    ("truncated parquet", truncated_parquet, r"parquet"),
    ("ragged rows", csv_file("Name,Email\nA,a@x.co\nB,b@x.co,extra\n"), r"line 3"),
    (
        "a quote left open to the end",
        csv_file('Name,Email,Note\nA,a@x.co,"oops\nB,b@x.co,z\nC,c@x.co,w\n'),
        r"starts in line 2 is never closed",
    ),
    (
        "undecodable with --encoding utf-8",
        lambda d: [
            *csv_file("Name,Email\nJos\xe9,a@x.co\n", encoding="cp1252")(d),
            "--encoding",
            "utf-8",
        ],
        r"utf-8",
    ),
    ("no email column", csv_file("Name,City\nAda,Paris\nBob,Oslo\n"), r"no email column"),
    ("unknown --email-column", good("--email-column", "Mail"), r"Mail.*(columns|found)"),
    (
        "two candidate columns",
        csv_file("Work Email,Personal Email\na@x.co,b@y.co\n"),
        r"Work Email.*Personal Email.*--email-column",
    ),
    ("xlsx too large", huge_for_xlsx, r"XLSX|xlsx"),
    ("output in a missing directory", good("-o", "{d}/no/such/dir/out.csv"), r"does not exist"),
    ("output equal to input", good("-o", "{d}/leads.csv"), r"input"),
    ("bad --usage-limit", good("--usage-limit", "15000"), r"COUNT/PERIOD"),
    ("bad --rate-limit", good("--rate-limit", "500/fortnight"), r"period"),
    ("chunk size above 100,000", good("--chunk-size", "100001"), r"100,000"),
    ("unknown extension", raw_file(b"{}", "leads.json"), r"\.json|format|extension"),
    ("not an xlsx", raw_file(b"PK\x03\x04garbage", "leads.xlsx"), r"XLSX|xlsx"),
    ("bad --cache-ttl", good("--cache-ttl", "forever"), r"duration"),
    (
        "unknown --recheck verdict",
        good("--recheck", "unkown=7d"),
        r"--recheck.*'unkown'.*deliverable, risky, undeliverable or unknown",
    ),
    ("--recheck without a duration", good("--recheck", "unknown"), r"VERDICT=DURATION"),
    ("zero --recheck", good("--recheck", "unknown=0"), r"more than zero"),
]


@pytest.fixture(scope="module")
def fake():
    with FakeInThread(retry_after=0.1) as running:
        yield running


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_costs_nothing(
    tmp_path: Path, fake: FakeInThread, make: Callable, message: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    args = make(work)
    before = {p.relative_to(work) for p in work.rglob("*")}
    spent = fake.summary().credits_spent
    done = cli("validate", *args, "--base-url", fake.url, "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2, done.stderr
    # Progress lines may come first (a too-big XLSX is only known after the scan); the error is
    # the one and only `ample-batch:` line, and the last.
    errors = [line for line in done.stderr.splitlines() if line.startswith("ample-batch: ")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.rstrip().endswith(errors[0])
    assert re.search(message, errors[0], re.IGNORECASE), errors[0]
    assert "Traceback" not in done.stderr
    assert fake.summary().credits_spent == spent
    assert {p.relative_to(work) for p in work.rglob("*")} == before


def test_simulate_with_a_base_url_given_is_refused_but_not_the_environments(
    tmp_path: Path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(3))
    state = str(tmp_path / "s")
    given = cli(
        "validate", str(src), "--simulate", "--base-url", "http://127.0.0.1:9", "--state-dir", state
    )
    assert given.returncode == 2
    assert given.stderr.startswith(
        "ample-batch: --simulate uses the built-in fake API: leave --base-url out"
    )
    assert not (tmp_path / "leads.validated.csv").exists()
    # A cron host's AMPLEMARKET_BASE_URL is no mistake of a trial's: the trial runs.
    env = {"AMPLEMARKET_BASE_URL": "http://127.0.0.1:9"}
    trial = cli("validate", str(src), "--simulate", "-q", "--state-dir", state, env=env)
    assert trial.returncode == 0, trial.stderr

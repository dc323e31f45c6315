"""The cp1252 fallback's warning names the first line that is not UTF-8, as the README says,
wherever that line is: inside the head the format is sniffed from, or far past it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli

from ample_batch.files.detect import HEAD_BYTES


def _cp1252_csv(path: Path, rows: int, bad_line: int) -> Path:
    """A CSV whose only non-ASCII cell (`José`, cp1252 0xe9) is on file line `bad_line`; long
    notes and few distinct emails make it big but quick to validate."""
    lines = ["id,name,Email,notes"]
    note = "n" * 120
    for i in range(1, rows + 1):
        name = "Jos\xe9" if i + 1 == bad_line else f"name{i:08d}"
        lines.append(f"{i},{name},lead{i % 300}@acme.com,{note}")
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    assert path.read_bytes().split(b"\n")[bad_line - 1].startswith(f"{bad_line - 1},Jos".encode())
    return path


@pytest.mark.parametrize(
    ("rows", "bad_line"),
    [(6_000, 5000), (20_000, 15_000)],
    ids=["inside-the-head", "past-the-head"],
)
def test_cp1252_warning_names_the_first_line_not_utf8(
    tmp_path: Path, rows: int, bad_line: int
) -> None:
    src = _cp1252_csv(tmp_path / "leads.csv", rows, bad_line)
    inside = src.read_bytes().index(b"\xe9") < HEAD_BYTES
    assert inside == (bad_line == 5000)
    expected = f"not UTF-8 (line {bad_line}): read as cp1252"

    estimate = cli("estimate", str(src), "--state-dir", str(tmp_path / "s"), "--json")
    assert estimate.returncode == 0, estimate.stderr
    assert json.loads(estimate.stdout)["warnings"] == [expected]
    table = cli("estimate", str(src), "--state-dir", str(tmp_path / "s"))
    assert f"warning: {expected}" in table.stdout

    done = cli(
        "validate", str(src), "--simulate", "--state-dir", str(tmp_path / "s"),
        "--usage-limit", "100000/1s",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"warning: {expected}" in done.stderr
    out = (tmp_path / "leads.validated.csv").read_text(encoding="utf-8")
    assert f"{bad_line - 1},José," in out

"""A file's identity tells "unchanged since the job saw it" from every rewrite we know of."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import wait_until

from ample_batch.files import identity as identity_module
from ample_batch.files.identity import SAMPLE_BYTES, FileIdentity, fingerprint_with_identity
from ample_batch.files.inspect import fingerprint, inspect_input

RACY = identity_module.RACY_SECONDS


def _lead_file(path: Path, rows: int = 8000) -> Path:
    lines = ["Name,Email"] + [f"Lead {i},lead{i:06d}@example.com" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 2 * SAMPLE_BYTES  # a middle that the samples do not cover
    return path


def _later(path: Path) -> int:
    """A clock reading well after the file's last change."""
    return path.stat().st_ctime_ns + int((RACY + 3) * 1e9)


def test_the_same_file_has_the_same_identity(tmp_path: Path) -> None:
    src = _lead_file(tmp_path / "a.csv")
    assert FileIdentity.of(src) == FileIdentity.of(src)
    assert FileIdentity.from_dict(FileIdentity.of(src).as_dict()) == FileIdentity.of(src)  # type: ignore[union-attr]


def test_a_rewrite_in_place_with_size_and_mtime_kept_is_not_mistaken(tmp_path: Path) -> None:
    src = _lead_file(tmp_path / "a.csv")
    seen = FileIdentity.of(src)
    assert seen is not None
    # The filesystem's clock must have moved on since the write the job saw.
    wait_until(lambda: time.time_ns() > seen.ctime_ns + 50_000_000, timeout=5)
    data = bytearray(src.read_bytes())
    middle = data.index(b"lead004000@")
    data[middle : middle + 4] = b"LEAD"  # same size, outside the head and tail samples
    with open(src, "r+b") as f:
        f.write(data)
    os.utime(src, ns=(seen.mtime_ns, seen.mtime_ns))  # and the old mtime put back
    now = FileIdentity.of(src)
    assert now is not None
    assert (now.size, now.mtime_ns, now.inode, now.sample) == (
        seen.size,
        seen.mtime_ns,
        seen.inode,
        seen.sample,
    )
    assert now != seen, "the ctime is what tells them apart"


def test_a_new_file_renamed_over_the_old_one_is_another_file(tmp_path: Path) -> None:
    src = _lead_file(tmp_path / "a.csv")
    seen = FileIdentity.of(src)
    copy = tmp_path / "b.csv"
    copy.write_bytes(src.read_bytes())
    os.utime(copy, ns=(seen.mtime_ns, seen.mtime_ns))  # type: ignore[union-attr]
    copy.replace(src)
    assert FileIdentity.of(src) != seen


def test_only_a_settled_file_gives_a_trusted_identity(tmp_path: Path) -> None:
    src = _lead_file(tmp_path / "a.csv")
    spec = inspect_input(src)
    # Just written: a write within the same clock tick would leave every time alone.
    digest, fresh = fingerprint_with_identity(spec, clock_ns=lambda: src.stat().st_ctime_ns)
    assert digest == fingerprint(spec) and fresh is None
    digest, settled = fingerprint_with_identity(spec, clock_ns=lambda: _later(src))
    assert digest == fingerprint(spec) and settled == FileIdentity.of(src)


@pytest.mark.parametrize(
    "record",
    [
        None,
        "x",
        {},
        {"size": 1},
        {**dict.fromkeys(("size", "mtime_ns", "ctime_ns", "inode", "device"), 1), "sample": 5},
    ],
)
def test_an_odd_record_is_no_identity(record: object) -> None:
    assert FileIdentity.from_dict(record) is None

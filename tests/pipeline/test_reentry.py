"""A cron re-entry of an unchanged file resumes from the state: the file is not hashed again
and the plan is not re-cut; any change to the file, or to --chunk-size, is still seen.

In this process against the fake API: 100 emails an hour, so each run submits one batch and
stops at once ("max runtime reached before the quota allows more"), as an hourly cron run does.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from helpers import KEY, FakeInThread, lead_rows, write_leads

import ample_batch
from ample_batch import ApiOptions, Stopped, ValidateOptions
from ample_batch.files import identity
from ample_batch.jobs.backend import open_store
from ample_batch.limits import Limit

FAST = {"retry_after": 0.1, "emails_per_second": 50000}


@pytest.fixture(autouse=True)
def _files_settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A file is trusted a second after its last change; these tests' files are brand new.
    monkeypatch.setattr(identity, "RACY_SECONDS", 0.0)


def _run(fake: FakeInThread, src: Path, state: Path, **kw: object) -> ample_batch.Summary:
    api = ApiOptions(api_key=KEY, base_url=fake.url, usage_limit=Limit(100, 3600.0))
    options = ValidateOptions(input=src, state_dir=state, api=api, max_runtime=60.0, **kw)  # type: ignore[arg-type]
    with pytest.raises(Stopped) as stopped:
        ample_batch.validate(options)
    summary = stopped.value.summary  # type: ignore[attr-defined]
    assert summary.stop_reason == "max runtime reached before the quota allows more"
    return summary  # type: ignore[no-any-return]


def _planned(state: Path) -> list[tuple[int, int]]:
    db = sqlite3.connect(state / "ample-batch.sqlite")
    try:
        return db.execute(
            "SELECT id, size FROM batches WHERE state = 'planned' ORDER BY id"
        ).fetchall()
    finally:
        db.close()


def _no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def hashed(*_: object) -> str:
        raise AssertionError("the whole file was hashed again")

    monkeypatch.setattr(identity, "fingerprint", hashed)


def test_an_unchanged_file_is_resumed_without_hashing_or_replanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(450))
    state = tmp_path / "s"
    with FakeInThread(**FAST) as fake:
        first = _run(fake, src, state)
        planned = _planned(state)
        assert [size for _, size in planned] == [100, 100, 100, 50]
        _no_hashing(monkeypatch)
        again = _run(fake, src, state)
        charged = fake.summary().credits_spent
    assert again.job == first.job
    assert _planned(state) == planned, "the plan in the store is kept as it is"
    assert (again.rows, again.unique_emails, again.remaining) == (495, 450, 350)
    assert charged == 100
    with open_store(state) as store:
        job = store.get_job(first.job)
    assert job is not None and job.stats["input_file"]["size"] == src.stat().st_size


def test_a_changed_chunk_size_is_planned_again(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(450))
    state = tmp_path / "s"
    with FakeInThread(**FAST) as fake:
        _run(fake, src, state)
        _run(fake, src, state, chunk_size=50)
    assert [size for _, size in _planned(state)] == [50] * 7


def test_a_file_rewritten_in_place_is_another_job(tmp_path: Path) -> None:
    rows = lead_rows(6000)
    src = write_leads(tmp_path / "leads.csv", rows)
    assert src.stat().st_size > 2 * identity.SAMPLE_BYTES
    state = tmp_path / "s"
    with FakeInThread(**FAST) as fake:
        first = _run(fake, src, state)
        before = src.stat()
        data = src.read_bytes()
        middle = data.index(b"lead003000@")
        with open(src, "r+b") as f:  # one email changed, the size and the mtime kept
            f.seek(middle)
            f.write(b"LEAD")
        os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert src.stat().st_size == before.st_size
        again = _run(fake, src, state)
    assert again.job != first.job

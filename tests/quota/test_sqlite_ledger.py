"""The SQLite ledger's failures are ours, wherever in a run they happen.

A ledger file locked past the busy timeout (another process stuck in a transaction), or one
that is corrupt, is StateUnavailable (exit 75: run again later) or StateUnusable (exit 2: move
it aside), naming the file: at open, at an admission, at any later write; from `validate` and
from `cancel`. Never sqlite3's own error, which the CLI could only call "unexpected" (exit 1).

The busy timeout is shortened (`BUSY_TIMEOUT`) so that SQLite gives up in a fraction of a
second; the lock is held from another connection, as another process would hold it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from helpers import KEY, FakeInThread, cli, lead_rows, make_client, write_leads

from ample_batch.errors import StateUnavailable, StateUnusable
from ample_batch.jobs.engine import Engine
from ample_batch.jobs.sqlite.store import Store
from ample_batch.limits import Limit
from ample_batch.quota import sqlite_ledger
from ample_batch.quota.clock import SystemClock
from ample_batch.quota.config import ledger_file_name
from ample_batch.quota.scheduler import Admission, ScheduleConfig, Scheduler, key_id
from ample_batch.quota.sqlite_ledger import SQLiteLedgerBucket, SQLiteLedgerFile

SHORT_WAIT = 0.2
"""The busy timeout of the ledgers under test: SQLite gives up after this many seconds."""


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Hold `path`'s write lock from another connection, as a stuck process would."""
    other = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def _garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage, not a database" * 200)
    return path


WRITES: dict[str, Callable[[SQLiteLedgerBucket], object]] = {
    "try_acquire": lambda bucket: bucket.try_acquire("usage:t:1", 5),
    "restamp_ticket": lambda bucket: bucket.restamp_ticket("usage:t:1", bucket.now()),
    "refund_ticket": lambda bucket: bucket.refund_ticket("usage:t:1"),
    "forget_before": lambda bucket: bucket.forget_before(bucket.now()),
    "pause_until": lambda bucket: bucket.pause_until(bucket.now() + 1000),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_to_a_locked_ledger_is_state_unavailable(tmp_path: Path, write: str) -> None:
    path = tmp_path / ledger_file_name("k")
    ledgers = SQLiteLedgerFile(path, timeout=SHORT_WAIT)
    try:
        bucket = ledgers.bucket("usage", 100, 60_000, SystemClock())
        with write_locked(path), pytest.raises(StateUnavailable) as caught:
            WRITES[write](bucket)
        assert str(path) in str(caught.value)
        assert "locked" in str(caught.value)
        # The lock gone, the same ledger works again: no transaction was left open.
        WRITES[write](bucket)
        assert bucket.in_window(0) >= 0
    finally:
        ledgers.close()


def test_opening_a_locked_ledger_is_state_unavailable(tmp_path: Path) -> None:
    path = tmp_path / ledger_file_name("k")
    SQLiteLedgerFile(path).bucket("usage", 100, 60_000, SystemClock())
    ledgers = SQLiteLedgerFile(path, timeout=SHORT_WAIT)
    with write_locked(path), pytest.raises(StateUnavailable, match="locked"):
        ledgers.bucket("requests", 100, 60_000, SystemClock())
    ledgers.close()


def test_a_corrupt_ledger_is_state_unusable_naming_it(tmp_path: Path) -> None:
    path = _garbage(tmp_path / ledger_file_name("k"))
    ledgers = SQLiteLedgerFile(path)
    with pytest.raises(StateUnusable, match="move it aside") as caught:
        ledgers.bucket("usage", 100, 60_000, SystemClock())
    assert str(path) in str(caught.value)
    ledgers.close()


async def test_an_admission_on_a_locked_ledger_is_state_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_ledger, "BUSY_TIMEOUT", SHORT_WAIT)
    config = ScheduleConfig(usage_limit=Limit(100, 60.0), ledger_dir=tmp_path, key_id="k")
    with Scheduler(config) as scheduler:
        assert config.ledger_path is not None
        with write_locked(config.ledger_path), pytest.raises(StateUnavailable) as caught:
            await scheduler.admit(10)
        assert str(config.ledger_path) in str(caught.value)
        # Once the other process lets go, the run's next admission goes through.
        await scheduler.admit(10)
        assert scheduler.usage_in_window() == 10


def test_the_ledger_file_is_named_after_the_key_id(tmp_path: Path) -> None:
    assert ledger_file_name("ab12") == "ledger-ab12.sqlite"
    config = ScheduleConfig(ledger_dir=tmp_path, key_id="ab12")
    assert config.ledger_path == tmp_path / ledger_file_name("ab12")


class LedgerUnreadableAfterThePost(Scheduler):
    """The ledger file turns unreadable once a batch was admitted (a disk gone bad)."""

    admitted = False

    async def admit(self, emails: int) -> Admission:
        admission = await super().admit(emails)
        self.admitted = True
        return admission

    async def request(self) -> str:
        if self.admitted:
            raise StateUnusable("/s/ledger-ab12.sqlite: is not a readable ample-batch database")
        return await super().request()


async def test_a_ledger_failing_after_an_unanswered_post_is_not_blamed_on_the_api(
    fake_api, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # The POST's connection drops: its fate is unknown, so the key check must answer before
    # anything else goes out, and that check's request slot finds the ledger unreadable.
    fake = await fake_api(drop=1.0)
    with Store(tmp_path) as store:
        job = store.open_job(
            input_path="/data/leads.csv", fingerprint="f", email_column="Email",
            output_path=None, cache_ttl=0,
        )  # fmt: skip
        store.plan(job.id, cached=[], new=[f"e{i}@x.co" for i in range(10)], chunk_size=10)
        config = ScheduleConfig(usage_limit=Limit(1000, 60.0), ledger_dir=tmp_path, key_id="k")
        with LedgerUnreadableAfterThePost(config) as scheduler:
            stop = asyncio.Event()
            client = make_client(session, fake.url, throttle=scheduler, stop=stop)
            engine = Engine(store, job.id, client, scheduler, stop=stop)
            # Before: "the API did not answer as itself", exit 75, and the file never named.
            with pytest.raises(StateUnusable, match="ledger-ab12"):
                await engine.run()
        stored = store.get_job(job.id)
        assert stored is not None and stored.possible_double_charges == 10


# The real command, with only the ledger's busy timeout shortened: a separate process, as a
# stuck cron run's would be, holds the file's lock.
_GIVING_UP_QUICKLY = (
    "from ample_batch.quota import sqlite_ledger; "
    f"sqlite_ledger.BUSY_TIMEOUT = {SHORT_WAIT}; "
    "from ample_batch.cli.main import entry; entry()"
)


def _popen_giving_up_quickly(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _GIVING_UP_QUICKLY, *args],
        env={**os.environ, "AMPLEMARKET_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_ledger_locked_mid_run_exits_75_naming_it(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(30))
    state = tmp_path / "state"
    ledger = state / ledger_file_name(key_id(KEY))
    # Every answer takes 0.5 s: the run is mid-request, its ledger open, when the lock is taken.
    with FakeInThread(latency=0.5, retry_after=0.1, emails_per_second=20000) as fake:
        args = ("validate", str(src), "--base-url", fake.url, "--state-dir", str(state), "-q")
        proc = _popen_giving_up_quickly(*args)
        try:
            deadline = time.monotonic() + 60
            while not fake.api.log:  # the key check: sent once the ledger is open
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.002)
            with write_locked(ledger):
                _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 75, err
        assert err.count("\n") == 1, err
        assert str(ledger) in err
        assert "locked" in err and "run the same command again" in err
        # Nothing was lost: the lock gone, the same command finishes the job.
        again = cli(*args)
        assert again.returncode == 0, again.stderr


def test_cancel_with_a_corrupt_ledger_exits_2_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store(state) as store:
        job = store.open_job(
            input_path="/data/leads.csv", fingerprint="f", email_column="Email",
            output_path=None, cache_ttl=0, key_id=key_id(KEY),
        )  # fmt: skip
    ledger = _garbage(state / ledger_file_name(key_id(KEY)))
    with FakeInThread() as fake:
        done = cli("cancel", job.id, "--base-url", fake.url, "--state-dir", str(state))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert str(ledger) in done.stderr


def test_cancel_with_a_locked_ledger_exits_75_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store(state) as store:
        job = store.open_job(
            input_path="/data/leads.csv", fingerprint="f", email_column="Email",
            output_path=None, cache_ttl=0, key_id=key_id(KEY),
        )  # fmt: skip
    ledger = state / ledger_file_name(key_id(KEY))
    SQLiteLedgerFile(ledger).bucket("usage", 100, 60_000, SystemClock())
    with FakeInThread() as fake, write_locked(ledger):
        proc = _popen_giving_up_quickly(
            "cancel", job.id, "--base-url", fake.url, "--state-dir", str(state)
        )
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert err.count("\n") == 1, err
    assert str(ledger) in err and "locked" in err

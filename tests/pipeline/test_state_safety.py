"""Findings of the review after issue 11's branches were merged, each pinned by a test:
the paid batch's id is committed before any ledger bookkeeping; a look at the state never
revives a truncated database; housekeeping never changes a run's exit code; and `-q` keeps
quiet only about planned stops, never about a full disk or an unwritable output."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from helpers import KEY, cli, make_client

from ample_batch.cli.main import exit_for
from ample_batch.errors import JobBusy, OutputUnwritten, StateUnavailable, StateUnusable, Stopped
from ample_batch.jobs.engine import Engine
from ample_batch.jobs.locks import FileLocks, Holder, this_host
from ample_batch.jobs.records import BatchState
from ample_batch.jobs.sqlite.db import DB_NAME
from ample_batch.jobs.sqlite.store import Store
from ample_batch.limits import Limit
from ample_batch.pipeline.jobs import cancel
from ample_batch.pipeline.steps import prune_cache
from ample_batch.quota.scheduler import Admission, ScheduleConfig, Scheduler

FAST = {"retry_after": 0.1, "emails_per_second": 20000}


class LedgerLockedAtTheAnswer(Scheduler):
    """The shared ledger stays locked past its busy timeout just as a POST is answered."""

    def accepted(self, admission: Admission) -> None:
        raise sqlite3.OperationalError("database is locked")


async def test_a_ledger_failing_at_the_answer_never_loses_the_paid_batch(
    fake_api, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake = await fake_api(**FAST)
    store = Store(tmp_path / "state")
    job = store.open_job(
        input_path="/data/leads.csv", fingerprint="f", email_column="Email",
        output_path=None, cache_ttl=0,
    )  # fmt: skip
    store.plan(job.id, cached=[], new=[f"lead{i}@acme.com" for i in range(20)], chunk_size=20)
    scheduler = LedgerLockedAtTheAnswer(ScheduleConfig(usage_limit=Limit(1000, 60.0)))
    stop = asyncio.Event()
    client = make_client(session, fake.url, throttle=scheduler, stop=stop)
    engine = Engine(store, job.id, client, scheduler, stop=stop, chunk_size=20)
    with pytest.raises(sqlite3.OperationalError):
        await engine.run()
    (batch,) = store.batches(job.id)
    # Before: still `submitting` with no remote id, so the next run paid for it again.
    assert batch.state is BatchState.RUNNING
    assert batch.remote_id is not None
    assert sum(r.method == "POST" for r in fake.api.log) == 1
    scheduler.close()
    store.close()


def _used_ledger(state: Path) -> None:
    """A ledger that remembers emails submitted, as every run that spent leaves behind."""
    ledger = sqlite3.connect(state / "ledger-0123456789abcdef.sqlite")
    ledger.execute("CREATE TABLE usage (name TEXT, item_timestamp INTEGER)")
    ledger.execute("INSERT INTO usage VALUES ('usage', 1)")
    ledger.commit()
    ledger.close()


def test_looking_at_a_truncated_state_never_revives_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _used_ledger(state)
    (state / DB_NAME).write_bytes(b"")
    looked = cli("status", "--state-dir", str(state))
    assert looked.returncode == 2, looked.stderr
    assert str(state / DB_NAME) in looked.stderr
    # Still empty: the next `validate` is refused too, instead of buying every job again.
    assert (state / DB_NAME).stat().st_size == 0
    with pytest.raises(StateUnusable):
        Store(state)


def test_pruning_the_cache_never_changes_the_outcome(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"not a database" * 100)
    prune_cache(state, 86400.0)  # a corrupt database here is the next run's to report
    assert (state / DB_NAME).read_bytes() == b"not a database" * 100


@pytest.mark.parametrize(
    ("error", "heard"),
    [
        (Stopped("max runtime reached"), False),
        (StateUnavailable("/s/ample-batch.sqlite: no space left"), True),
        (OutputUnwritten("/out/leads.validated.csv: read-only file system"), True),
    ],
)
def test_quiet_keeps_silent_only_about_planned_stops(
    error: Exception, heard: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        exit_for(error, quiet=True)
    assert exited.value.code == 75
    # A full disk or an unwritable output is not every night's news: cron must mail it.
    assert (str(error) in capsys.readouterr().err) is heard


def test_cancel_never_signals_a_run_that_only_follows_the_job(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store(state) as store:
        job = store.open_job(
            input_path="/data/old.csv", fingerprint="f", email_column="Email",
            output_path=None, cache_ttl=0,
        )  # fmt: skip
    # Another job's run took over this abandoned job's open batch: it holds the lock, but
    # SIGTERM would stop that other job, and cancel nothing of this one.
    locks = FileLocks(state)
    with locks.try_job_lock(job.id, following=True) as held:
        assert held
        assert locks.holder(job.id) == Holder(os.getpid(), this_host(), following=True)
        with pytest.raises(JobBusy, match="followed by process"):
            cancel(job.id, state_dir=state, api_key=KEY)

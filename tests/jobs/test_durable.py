"""Issue 11, 7: durable where it costs money, and the state's failures named.

The state database's commits around a paid POST survive a locked database; planning is
chunked and leaves the event loop; a newer, empty or corrupt database, or a state dir that is
a file, is refused with a message naming the file (exit 2); an output that cannot be written
after the work is done exits 75, and the rerun rewrites it without spending.

Planning runs on both stores (`backend`); the rest is SQLite's own (its file's locks, its
migrations, the state dir) or the CLI's. PostgreSQL's twins are tests/jobs/test_pg_store.py.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from helpers import (
    FAST_RETRY,
    KEY,
    FakeInThread,
    batch_states,
    cli,
    lead_rows,
    make_client,
    write_leads,
)
from store_backends import Backend

from ample_batch.errors import StateUnusable
from ample_batch.jobs.engine import Engine
from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import BatchState
from ample_batch.jobs.sqlite.db import DB_NAME, MIGRATIONS
from ample_batch.jobs.sqlite.store import Store
from ample_batch.jobs.store_shared import PLAN_CHUNK
from ample_batch.limits import Limit
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler, key_id

FAST = {"retry_after": 0.2, "emails_per_second": 20000}


def _open_job(store: JobStore):
    return store.open_job(
        input_path="/data/leads.csv",
        fingerprint="abc",
        email_column="Email",
        output_path="/data/leads.validated.csv",
        cache_ttl=86400.0,
        key_id=key_id(KEY),
        base_url="http://127.0.0.1",
    )


def _hold_write_lock_while_submitting(db_path: Path, hold: float, held: threading.Event) -> None:
    """From another connection: take the write lock once a batch is `submitting` (its POST
    is out), and keep it `hold` seconds, far past the store's busy timeout."""
    other = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [r[0] for r in other.execute("SELECT state FROM batches")]
            if "submitting" in states:
                break
            time.sleep(0.002)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(hold)
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_locked_database_during_the_post_does_not_lose_the_batch(
    tmp_path: Path, fake_api, session: aiohttp.ClientSession
) -> None:
    # The POST's answer takes 0.4 s; the lock is held 1.5 s; the store gives up waiting
    # after 0.2 s. Before: mark_running's one commit failed ("database is locked"), the
    # remote id was lost, and the next run resent the paid batch.
    fake = await fake_api(latency=0.4, **FAST)
    with Store(tmp_path, timeout=0.2) as store:
        job = _open_job(store)
        store.plan(job.id, cached=[], new=[f"e{i}@x.co" for i in range(50)], chunk_size=50)
        held = threading.Event()
        locker = threading.Thread(
            target=_hold_write_lock_while_submitting, args=(tmp_path / DB_NAME, 1.5, held)
        )
        locker.start()
        config = ScheduleConfig(usage_limit=Limit(1000, 1.0), rate_limit=Limit(100, 1.0))
        with Scheduler(config) as scheduler:
            client = make_client(session, fake.url, throttle=scheduler, policy=FAST_RETRY)
            engine = Engine(store, job.id, client, scheduler, stop=asyncio.Event())
            counters = await engine.run()
        locker.join()
        assert held.is_set()
        (batch,) = store.batches(job.id)
        assert batch.remote_id is not None
        assert batch.state is BatchState.DONE
        assert counters.possible_double_charges == 0
        assert store.progress(job.id).pending == 0
    summary = fake.api.summary()
    assert summary.emails_submitted == 50
    assert summary.emails_submitted_twice == 0


def test_planning_is_chunked_and_a_half_planned_job_replans_right(backend: Backend) -> None:
    emails = [f"e{i:07d}@x.co" for i in range(PLAN_CHUNK * 2 + 10)]
    with backend.open() as store:
        job = _open_job(store)
        # A run killed between planning transactions: the first chunk's batches are there.
        store.plan(job.id, cached=[], new=emails[:PLAN_CHUNK], chunk_size=20_000)
        # The next run plans the whole job again: nothing is lost or doubled.
        store.plan(
            job.id, cached=[(emails[0], "deliverable", False)], new=emails[1:], chunk_size=20_000
        )
        planned = store.batches(job.id, BatchState.PLANNED)
        in_batches = [e for b in planned for e in store.batch_emails(b.id)]
        assert sorted(in_batches) == emails[1:]
        assert max(b.size for b in planned) == 20_000
        assert store.progress(job.id).emails == len(emails)


@pytest.mark.parametrize("store_backend", ["postgres"])
def test_planning_takes_several_transactions_on_postgresql(backend: Backend) -> None:
    """Another host sees a half-planned job between two planning transactions: no planning
    transaction holds everything (nor the write lock) for the whole plan."""
    # SQLite's twin is the next test, with a writer of its own kind.
    import psycopg

    emails = [f"e{i:07d}@x.co" for i in range(PLAN_CHUNK * 4)]
    counts: set[int] = set()
    done = threading.Event()

    def watcher() -> None:
        with psycopg.connect(backend.url or "", autocommit=True) as other:
            other.execute(f"SET search_path TO {backend.schema()}")
            while not done.is_set():
                # Takes the store's write lock, as a claim on another host would.
                with other.transaction():
                    other.execute("SELECT pg_advisory_xact_lock(%s)", (store._pg._write_lock,))
                    (count,) = other.execute("SELECT COUNT(*) FROM batch_emails").fetchone()
                counts.add(count)
                time.sleep(0.001)

    with backend.open() as store:
        job = _open_job(store)
        thread = threading.Thread(target=watcher)
        thread.start()
        store.plan(job.id, cached=[], new=emails, chunk_size=10_000)
        done.set()
        thread.join()
    assert {c for c in counts if 0 < c < len(emails)}, counts


def test_planning_takes_several_transactions(tmp_path: Path) -> None:
    # Another process can write between two planning transactions: watched from a thread
    # that commits as soon as it gets the lock, which it could not under one transaction.
    emails = [f"e{i:07d}@x.co" for i in range(PLAN_CHUNK * 4)]
    commits: list[float] = []
    done = threading.Event()

    def writer() -> None:
        # No busy timeout: SQLite's own handler backs off in sleeps of up to 100 ms and can
        # miss every pause between chunks on a loaded machine; this retries every 0.5 ms.
        other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None, timeout=0)
        while not done.is_set():
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                time.sleep(0.0005)
                continue
            count = other.execute("SELECT COUNT(*) FROM batch_emails").fetchone()[0]
            other.execute("COMMIT")
            commits.append(count)
            time.sleep(0.001)
        other.close()

    with Store(tmp_path) as store:
        job = _open_job(store)
        thread = threading.Thread(target=writer)
        thread.start()
        store.plan(job.id, cached=[], new=emails, chunk_size=10_000)
        done.set()
        thread.join()
    partial = {c for c in commits if 0 < c < len(emails)}
    assert partial, "no other transaction ran while the job was planned"


def test_a_newer_state_database_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StateUnusable, match="newer ample-batch") as caught:
        Store(tmp_path)
    assert str(tmp_path / DB_NAME) in str(caught.value)
    assert "upgrade ample-batch" in str(caught.value)


def test_a_newer_state_database_exits_2_naming_it(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    state = tmp_path / "state"
    simulated = state / "simulated"  # a simulation's own store
    with Store(simulated):
        pass
    db = sqlite3.connect(simulated / DB_NAME)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    done = cli("validate", str(src), "--simulate", "--state-dir", str(state), "-q")
    assert done.returncode == 2, done.stderr
    assert str(simulated / DB_NAME) in done.stderr
    assert "upgrade" in done.stderr


def test_an_empty_database_with_a_used_ledger_is_refused(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    state = tmp_path / "state"
    with FakeInThread(**FAST) as fake:
        args = ("validate", str(src), "--base-url", fake.url, "--state-dir", str(state), "-q")
        assert cli(*args).returncode == 0
        spent = fake.summary().credits_spent
        # The database is truncated (a full disk, a bad copy): the ledger remembers spend.
        (state / DB_NAME).write_bytes(b"")
        for suffix in ("-wal", "-shm"):
            (state / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        assert str(state / DB_NAME) in done.stderr
        assert done.stderr.count("\n") == 1
        assert fake.summary().credits_spent == spent


def test_a_state_dir_that_is_a_file_exits_2_naming_it(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    # `--state-dir FILE` itself click refuses; a dir under a file (HOME on a bad mount, an
    # AMPLE_BATCH_HOME typo) was "unexpected error: NotADirectoryError", exit 1.
    blocker = tmp_path / "home"
    blocker.write_text("not a directory")
    state = blocker / "ample-batch"
    done = cli("validate", str(src), "--simulate", "-q", env={"AMPLE_BATCH_HOME": str(state)})
    assert done.returncode == 2, done.stderr
    assert str(state) in done.stderr
    assert "Traceback" not in done.stderr
    assert "--state-dir" in done.stderr


def test_an_unwritable_output_after_spending_exits_75_and_the_rerun_rewrites_it(
    tmp_path: Path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(300))
    out = tmp_path / "out" / "leads.checked.csv"
    out.parent.mkdir()
    state = tmp_path / "state"
    with FakeInThread(retry_after=0.2, emails_per_second=200) as fake:
        args = ("validate", str(src), "-o", str(out), "--base-url", fake.url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ample_batch", *args, "--state-dir", str(state)],
            env={**os.environ, "AMPLEMARKET_API_KEY": KEY},
            stderr=subprocess.PIPE,
            text=True,
        )
        # Once the batch is paid for, the output path turns into a directory (as root, a
        # read-only mode would not stop the write).
        deadline = time.monotonic() + 30
        while "running" not in [s for s, _ in batch_states(state)]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        out.mkdir()
        (out / "keep").write_text("x")
        _o, err = proc.communicate(timeout=60)
        assert proc.returncode == 75, err
        assert str(out) in err
        spent = fake.summary().credits_spent
        assert spent == 300
        (out / "keep").unlink()
        out.rmdir()
        again = cli(*args, "--state-dir", str(state), "-q")
        assert again.returncode == 0, again.stderr
        assert fake.summary().credits_spent == spent
    assert out.is_file()


def test_a_corrupt_ledger_exits_2_naming_it(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    state = tmp_path / "state"
    state.mkdir()
    ledger = state / f"ledger-{key_id(KEY)}.sqlite"
    ledger.write_bytes(b"garbage, not a database" * 200)
    with FakeInThread(**FAST) as fake:
        done = cli("validate", str(src), "--base-url", fake.url, "--state-dir", str(state), "-q")
        assert fake.summary().credits_spent == 0
    assert done.returncode == 2, done.stderr
    assert str(ledger) in done.stderr
    assert done.stderr.count("\n") == 1


def test_bulk_database_work_runs_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    # Planning 5M emails took ten seconds on the event loop: polls and signals waited.
    from ample_batch.options import ApiOptions, ValidateOptions
    from ample_batch.pipeline.validate import validate

    threads: dict[str, set[str]] = {}
    for name in ("plan", "job_verdicts", "fresh_verdicts", "batched_emails", "progress"):
        original = getattr(Store, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            threads.setdefault(_name, set()).add(threading.current_thread().name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, spy)
    src = write_leads(tmp_path / "leads.csv", lead_rows(200))
    summary = validate(
        ValidateOptions(
            input=src,
            state_dir=tmp_path / "state",
            api=ApiOptions(simulate=True, usage_limit=Limit(1000, 1.0)),
        )
    )
    assert summary.complete
    main = threading.main_thread().name
    for name in ("plan", "job_verdicts", "fresh_verdicts", "batched_emails"):
        assert threads[name] and main not in threads[name], (name, threads[name])

"""What the PostgreSQL job store does beyond the SQLite one's behaviour (tests/jobs run both):
a job found by its content wherever the file lies, verdicts streamed, claims serialised across
connections, and a lost connection retried or turned into exit 75 without the password."""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from helpers import FAST_RETRY, KEY, ManualClock, make_client
from postgres_server import PASSWORD

from ample_batch.errors import StateUnavailable
from ample_batch.jobs.engine import Engine
from ample_batch.jobs.postgres.store import PgStore
from ample_batch.jobs.records import BatchState
from ample_batch.limits import Limit
from ample_batch.pg import content_job_id
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler, key_id

FAST = (0.01, 0.05, 0.1)


@pytest.fixture
def store(pg_url: str) -> Iterator[PgStore]:
    with PgStore(pg_url, clock=ManualClock(start=1_000_000.0), retry_waits=FAST) as opened:
        yield opened


def _open(store: PgStore, path: str = "/data/leads.csv", **extra: object):
    options = {"fingerprint": "f" * 40, "email_column": "Email", "cache_ttl": 86400.0}
    options.update(extra)
    return store.open_job(input_path=path, output_path=None, **options)  # type: ignore[arg-type]


def _kill(url: str, pid: int) -> None:
    """End one server process from another connection, as a failover or a DBA would."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _backend_pid(store: PgStore) -> int:
    conn = store._pg._conn
    assert conn is not None
    return int(conn.info.backend_pid)


def test_the_same_content_under_another_path_is_the_same_job(store: PgStore) -> None:
    here = _open(store, "/home/ana/leads.csv")
    store.plan(here.id, cached=[], new=["a@x.co"], chunk_size=5)
    there = _open(store, "/mnt/pod-7/input/renamed.csv")
    assert there.id == here.id == content_job_id("f" * 40, "Email")
    assert there.input_path == "/mnt/pod-7/input/renamed.csv"  # where it was seen last
    assert store.progress(there.id).emails == 1
    # Another sheet, another column or other content: another job.
    assert _open(store, sheet="Leads 2").id != here.id
    assert _open(store, email_column="Work email").id != here.id
    assert _open(store, fingerprint="0" * 40).id != here.id
    assert len(store.jobs()) == 4


def test_verdicts_stream_and_the_store_writes_meanwhile(store: PgStore) -> None:
    job = _open(store)
    cached = [(f"e{i:06d}@x.co", "deliverable", i % 2 == 0) for i in range(100_000)]
    store.plan(job.id, cached=cached, new=["late@x.co"], chunk_size=10)
    del cached
    tracemalloc.start()
    try:
        seen = 0
        for _verdict in store.job_verdicts(job.id):
            if seen == 10:
                # The stream has a connection of its own: the store's stays free for writes.
                (planned,) = store.batches(job.id, BatchState.PLANNED)
                store.record_page(planned.id, [("late@x.co", "risky", None)], next_href=None)
            seen += 1
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen >= 100_000
    # Fetched whole, these 100,000 rows peaked at 19 MB; streamed, under 4.
    assert peak < 8_000_000, peak
    assert ("late@x.co", "risky", None) in list(store.fresh_verdicts(0.0))


def test_a_connection_killed_between_calls_is_reopened(store: PgStore) -> None:
    job = _open(store)
    store.plan(job.id, cached=[], new=["a@x.co", "b@x.co"], chunk_size=5)
    (batch,) = store.batches(job.id)
    store.mark_submitting(batch.id)
    _kill(store.url, _backend_pid(store))
    # The POST went out: `running` must land, on a new connection.
    store.mark_running(batch.id, remote_id="r1", remote_href="/v/r1")
    assert store.batch(batch.id).state is BatchState.RUNNING
    _kill(store.url, _backend_pid(store))
    assert store.batch_emails(batch.id) == ["a@x.co", "b@x.co"]
    store.mark_fetching(batch.id, first_href="/v/r1/1", remote_status="completed")
    _kill(store.url, _backend_pid(store))
    # A page is written in pipeline mode (its statements sent at once): reopened all the same.
    store.record_page(batch.id, [("a@x.co", "risky", None)], next_href="/v/r1/2")
    assert store.batch_verdicts(batch.id) == [("a@x.co", "risky", None)]
    assert store.batch(batch.id).next_href == "/v/r1/2"


def test_a_connection_killed_mid_plan_plans_every_email_once(store: PgStore) -> None:
    job = _open(store)
    emails = [f"e{i:07d}@x.co" for i in range(200_000)]
    pid = _backend_pid(store)
    killed = threading.Event()

    def kill_once_planning_started() -> None:
        with psycopg.connect(store.url, autocommit=True) as watcher:
            watcher.execute(f"SET search_path TO {store.schema}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                (rows,) = watcher.execute("SELECT COUNT(*) FROM batch_emails").fetchone() or (0,)
                if rows:
                    watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.set()
                    return
                time.sleep(0.001)

    killer = threading.Thread(target=kill_once_planning_started)
    killer.start()
    store.plan(job.id, cached=[], new=emails, chunk_size=10_000)
    killer.join()
    assert killed.is_set()
    assert _backend_pid(store) != pid  # it did reconnect
    planned = store.batches(job.id, BatchState.PLANNED)
    in_batches = [e for b in planned for e in store.batch_emails(b.id)]
    assert sorted(in_batches) == emails
    assert sum(b.size for b in planned) == len(emails)


def _kill_mid_commit(url: str, pid: int, killed: threading.Event) -> threading.Thread:
    """Once `pid` is running a COMMIT (slowed by a deferred trigger), end it: the client
    cannot know whether the commit landed."""

    def watch() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                busy = admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                    " AND query = 'COMMIT'",
                    (pid,),
                ).fetchone()
                if busy:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.set()
                    return
                time.sleep(0.002)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_a_commit_whose_answer_is_lost_is_retried_only_when_idempotent(store: PgStore) -> None:
    job = _open(store)
    with psycopg.connect(store.url, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION ample_batch.slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON ample_batch.jobs"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " EXECUTE FUNCTION ample_batch.slow_commit()"
        )
    # An increment may not run twice: its unknown fate is exit 75, for the next run to see.
    killed = threading.Event()
    killer = _kill_mid_commit(store.url, _backend_pid(store), killed)
    with pytest.raises(StateUnavailable, match="run the same command again"):
        store.note_possible_double_charges(job.id, 5)
    killer.join()
    assert killed.is_set()
    # Setting a job's state twice is setting it once: retried on a new connection.
    store.jobs()  # reconnected
    killed.clear()
    killer = _kill_mid_commit(store.url, _backend_pid(store), killed)
    store.update_job(job.id, state="paging", stats={"n": 1})
    killer.join()
    assert killed.is_set()
    again = store.get_job(job.id)
    assert again is not None and (again.state, again.stats) == ("paging", {"n": 1})


def test_a_database_gone_for_good_is_exit_75_without_the_password(
    store: PgStore, pg_url: str
) -> None:
    job = _open(store)
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(store),))
        try:
            started = time.monotonic()
            with pytest.raises(StateUnavailable) as caught:
                store.progress(job.id)
            assert time.monotonic() - started < 5  # a few quick reconnects, then the news
            with pytest.raises(StateUnavailable):
                list(store.job_verdicts(job.id))
        finally:
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")
    message = str(caught.value)
    assert PASSWORD not in message
    assert "ample:***@127.0.0.1" in message
    assert "run the same command again" in message
    assert "\n" not in message
    # Back again: the next call reconnects.
    assert store.progress(job.id).emails == 0


def test_two_hosts_claiming_one_email_at_once_buy_it_once(pg_url: str) -> None:
    """Two connections (hosts) submit batches sharing an email at the same instant: the write
    lock serialises the claims, so exactly one batch goes out with the shared email. (Without
    the lock, about one round in three sent it twice.)"""
    stores = [PgStore(pg_url, retry_waits=FAST) for _ in range(2)]
    try:
        for round_ in range(6):
            _claim_at_once(stores, round_)
    finally:
        for s in stores:
            s.close()


def _claim_at_once(stores: list[PgStore], round_: int) -> None:
    jobs = [
        _open(s, f"/host{n}/leads.csv", fingerprint=f"{round_}{n}" * 20, key_id="k", base_url="u")
        for n, s in enumerate(stores)
    ]
    shared = f"shared{round_}@x.co"
    for n, (s, job) in enumerate(zip(stores, jobs, strict=True)):
        s.plan(job.id, cached=[], new=[shared, f"own{round_}-{n}@x.co"], chunk_size=5)
    batches = [s.batches(job.id)[0].id for s, job in zip(stores, jobs, strict=True)]
    barrier = threading.Barrier(2)

    def submit(n: int) -> None:
        barrier.wait()
        stores[n].mark_submitting(batches[n])

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [stores[0].batch(b) for b in batches]
    (submitting,) = (b for b in states if b.state is BatchState.SUBMITTING)
    (other,) = (b for b in states if b.state is BatchState.PLANNED)
    assert shared in stores[0].batch_emails(submitting.id)
    assert shared not in stores[0].batch_emails(other.id)


async def test_an_engine_run_survives_its_connection_killed_at_each_stage(
    pg_url: str, tmp_path: Path, fake_api, session: aiohttp.ClientSession
) -> None:
    """Each time a batch reaches a new state, another session ends every ample-batch
    connection (a failover, a DBA's pg_terminate_backend): the run reconnects, the paid
    batch's remote id lands, and nothing is bought twice."""
    fake = await fake_api(retry_after=0.05, latency=0.2)
    killed: list[str] = []
    done = threading.Event()

    def killer() -> None:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SET search_path TO ample_batch")
            while not done.is_set():
                for (state,) in admin.execute("SELECT DISTINCT state FROM batches").fetchall():
                    if state not in killed and state != "planned":
                        killed.append(state)
                        admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                            " application_name = 'ample-batch' AND pid <> pg_backend_pid()"
                        )
                time.sleep(0.002)

    with PgStore(pg_url, retry_waits=FAST) as store:
        job = _open(store, key_id=key_id(KEY), base_url=fake.url)
        store.plan(job.id, cached=[], new=[f"e{i}@x.co" for i in range(50)], chunk_size=50)
        first_session = _backend_pid(store)
        thread = threading.Thread(target=killer)
        thread.start()
        config = ScheduleConfig(usage_limit=Limit(1000, 1.0), rate_limit=Limit(100, 1.0))
        try:
            with Scheduler(config) as scheduler:
                client = make_client(session, fake.url, throttle=scheduler, policy=FAST_RETRY)
                engine = Engine(store, job.id, client, scheduler, stop=asyncio.Event())
                counters = await asyncio.wait_for(engine.run(), 30)
        finally:
            done.set()
            thread.join()
        (batch,) = store.batches(job.id)
        assert batch.state is BatchState.DONE and batch.remote_id is not None
        assert {"submitting", "running"} <= set(killed)
        assert _backend_pid(store) != first_session  # it was killed, and reconnected
        assert counters.possible_double_charges == 0
        assert len(list(store.job_verdicts(job.id))) == 50
    summary = fake.api.summary()
    assert summary.emails_submitted == 50
    assert summary.emails_submitted_twice == 0


def test_a_lock_lost_with_its_connection_is_taken_again_outside_the_claims_transaction(
    pg_url: str,
) -> None:
    from ample_batch import pg
    from ample_batch.jobs.backend import fence_claims
    from ample_batch.jobs.postgres.locks import PgLocks

    mine = PgLocks(pg_url)
    write_lock = pg.advisory_key("store", "ample_batch")
    recovered_while_free: list[bool] = []
    still_held = mine.still_held

    def watched_still_held(job_id: str) -> bool:
        # Reconnecting can take up to the connect timeout: no claim of another host may wait
        # on it, so the schema's write lock must be free meanwhile.
        with psycopg.connect(pg_url, autocommit=True) as other:
            free = other.execute("SELECT pg_try_advisory_lock(%s)", (write_lock,)).fetchone()
            recovered_while_free.append(bool(free and free[0]))
            other.execute("SELECT pg_advisory_unlock_all()")
        return still_held(job_id)

    mine.still_held = watched_still_held  # type: ignore[method-assign]
    try:
        with PgStore(pg_url, retry_waits=FAST) as store:
            job = _open(store)
            store.plan(job.id, cached=[], new=["a@x.co"], chunk_size=1)
            (batch,) = store.batches(job.id)
            with mine.try_job_lock(job.id) as held:
                assert held
                fence_claims(store, mine, job.id)
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND application_name LIKE 'ample-batch % run %'"
                    )
                assert not store.mark_submitting(batch.id).changed  # nobody took it: claimed
                assert not mine.lost(job.id)
            assert store.batch(batch.id).state is BatchState.SUBMITTING
    finally:
        mine.close()
    assert recovered_while_free == [True]


def test_a_claim_fenced_by_a_lock_another_run_took_claims_nothing(pg_url: str) -> None:
    from ample_batch.errors import JobLockLost
    from ample_batch.jobs.backend import fence_claims
    from ample_batch.jobs.postgres.locks import PgLocks

    mine, theirs = PgLocks(pg_url), PgLocks(pg_url)
    try:
        with PgStore(pg_url, retry_waits=FAST) as store:
            job = _open(store)
            store.plan(job.id, cached=[], new=["a@x.co", "b@x.co"], chunk_size=1)
            first, second = (b.id for b in store.batches(job.id))
            with mine.try_job_lock(job.id) as held:
                assert held
                fence_claims(store, mine, job.id)
                assert not store.mark_submitting(first).changed  # held: claimed
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND application_name LIKE 'ample-batch % run %'"
                    )
                with theirs.try_job_lock(job.id) as taken:
                    assert taken
                    with pytest.raises(JobLockLost, match="lost the job's lock to another run"):
                        store.mark_submitting(second)
            assert store.batch(first).state is BatchState.SUBMITTING
            assert store.batch(second).state is BatchState.PLANNED
    finally:
        mine.close()
        theirs.close()

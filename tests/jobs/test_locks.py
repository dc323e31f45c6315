"""Both kinds of job lock keep the seam's contract: one holder at a time, who it is, released
when the holder dies by SIGKILL, and a cancel request that reaches the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from ample_batch.errors import JobBusy
from ample_batch.jobs.backend import State, job_locks
from ample_batch.jobs.locks import Holder, JobLocks, job_lock, this_host
from ample_batch.jobs.postgres.locks import PgLocks, holder_name, parse_holder

MakeLocks = Callable[[], JobLocks]


@pytest.fixture(params=["files", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> State:
    if request.param == "files":
        return State(tmp_path / "state")
    return State(tmp_path / "unused", url=request.getfixturevalue("pg_url"))


@pytest.fixture
def make_locks(state: State) -> Iterator[MakeLocks]:
    """Lock objects on one state: each one as another process would hold them."""
    made: list[JobLocks] = []

    def make() -> JobLocks:
        made.append(job_locks(state))
        return made[-1]

    yield make
    for locks in made:
        locks.close()


def test_one_holder_at_a_time_and_it_is_named(make_locks: MakeLocks) -> None:
    mine, theirs = make_locks(), make_locks()
    assert mine.holder("j1") is None
    with job_lock(mine, "j1"):
        assert theirs.holder("j1") == Holder(os.getpid(), this_host())
        with pytest.raises(JobBusy, match=rf"process {os.getpid()}\)"), job_lock(theirs, "j1"):
            pass
        with theirs.try_job_lock("j2") as other_job:
            assert other_job
    assert theirs.holder("j1") is None
    with theirs.try_job_lock("j1") as free:
        assert free


def test_a_follower_is_named_as_one(make_locks: MakeLocks) -> None:
    mine, theirs = make_locks(), make_locks()
    with mine.try_job_lock("j1", following=True) as held:
        assert held
        assert theirs.holder("j1") == Holder(os.getpid(), this_host(), following=True)
        with theirs.try_job_lock("j1", following=True) as again:
            assert not again


_HOLD = """
import sys, time
from pathlib import Path
from ample_batch.jobs.backend import State, job_locks
state = State(Path(sys.argv[1]), url=sys.argv[2] or None)
locks = job_locks(state)
with locks.try_job_lock("j1") as held:
    print("held" if held else "busy", flush=True)
    time.sleep(120)
"""


def test_a_holder_killed_by_sigkill_frees_the_job(state: State, make_locks: MakeLocks) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(state.dir), state.url or ""],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locks = make_locks()
        found = locks.holder("j1")
        assert found is not None and found.pid == holder.pid and found.here
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # PostgreSQL ends the session when its client's socket closes, a moment after the kill.
    wait_until(lambda: locks.holder("j1") is None, timeout=10)
    with locks.try_job_lock("j1") as free:
        assert free


def test_a_cancel_request_reaches_the_holder(make_locks: MakeLocks) -> None:
    run, cancel = make_locks(), make_locks()
    with run.try_job_lock("j1") as held:
        assert held and not run.cancel_requested("j1")
        found = cancel.holder("j1")
        assert found is not None
        cancel.request_cancel("j1", found)
        assert run.cancel_requested("j1")
        assert not run.cancel_requested("j2")


def test_a_shared_cancel_request_lasts_while_cancel_waits_and_no_longer(pg_url: str) -> None:
    state = State(Path("unused"), url=pg_url)
    run, cancel = job_locks(state), job_locks(state)
    try:
        cancel.request_cancel("j1", Holder(1, "elsewhere"))
        assert run.cancel_requested("j1") and run.cancel_requested("j1")  # not used up
        cancel.close()  # cancel is done (or died): no stale request stays behind
        assert not run.cancel_requested("j1")
    finally:
        run.close()
        cancel.close()


def test_holder_names_fit_the_servers_limit_and_read_back() -> None:
    long_host = "pod-" + "x" * 80
    name = holder_name(4242, long_host, following=False)
    assert len(name.encode()) <= 63
    found = parse_holder(name)
    assert (found.pid, found.following) == (4242, False)
    assert long_host.startswith(found.host)
    assert parse_holder(None) == Holder(0, "?")
    assert parse_holder("psql") == Holder(0, "?")
    assert not Holder(1, "elsewhere").here
    assert Holder(1, "elsewhere").describe() == "process 1 on host elsewhere"


def _end_other_sessions(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_run_lock_lost_with_its_connection_is_taken_again_unless_taken(pg_url: str) -> None:
    mine, theirs = PgLocks(pg_url), PgLocks(pg_url)
    try:
        with mine.try_job_lock("j1") as held:
            assert held and mine.still_held("j1")
            _end_other_sessions(pg_url)  # a database restart, as the run sees it
            assert mine.still_held("j1")
            assert theirs.holder("j1") is not None
            _end_other_sessions(pg_url)
            with theirs.try_job_lock("j1") as taken:
                assert taken  # another host got in while this one was cut off
                assert not mine.still_held("j1")
        assert not mine.still_held("j1")
    finally:
        mine.close()
        theirs.close()


def test_a_second_lock_on_a_held_job_is_refused_in_the_same_process(
    make_locks: MakeLocks,
) -> None:
    """One PostgreSQL session takes an advisory lock twice; a file lock refuses the second
    try: both refuse it, whether the first holder runs the job or follows it."""
    locks = make_locks()
    for first, second in ((True, True), (True, False), (False, True), (False, False)):
        with locks.try_job_lock("j1", following=first) as held:
            assert held
            with locks.try_job_lock("j1", following=second) as again:
                assert not again, (first, second)
            assert locks.holder("j1") is not None  # the refusal released nothing
        with locks.try_job_lock("j1", following=second) as free:
            assert free, (first, second)
    assert locks.holder("j1") is None


def _end_run_lock_sessions(url: str) -> None:
    """End the sessions holding run locks (named 'ample-batch <pid> run <host>'), as a
    failover or a proxy would end one connection, and wait until they are gone."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'ample-batch % run %'"
        )


def test_a_fence_passes_while_the_run_holds_its_lock_and_not_once_another_took_it(
    pg_url: str,
) -> None:
    import psycopg

    from ample_batch.errors import JobLockLost

    mine, theirs = PgLocks(pg_url), PgLocks(pg_url)
    assert mine.fence("j1") is None  # holds nothing: nothing to fence
    try:
        with mine.try_job_lock("j1") as held, psycopg.connect(pg_url, autocommit=True) as db:
            fence = mine.fence("j1")
            assert held and fence is not None
            assert fence.holds(db)  # held: the claim goes ahead
            _end_run_lock_sessions(pg_url)
            assert not fence.holds(db)  # what the claim sees, without connecting
            fence.recover()  # lost, but nobody took it: taken again, as still_held does
            assert fence.holds(db) and not mine.lost("j1")
            _end_run_lock_sessions(pg_url)
            with theirs.try_job_lock("j1") as taken:
                assert taken and not fence.holds(db)
                with pytest.raises(JobLockLost, match="lost the job's lock to another run"):
                    fence.recover()
                assert mine.lost("j1") and not mine.still_held("j1")
    finally:
        mine.close()
        theirs.close()

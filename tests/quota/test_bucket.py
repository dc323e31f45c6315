"""Every ledger backend keeps the `Bucket` contract: the same signatures (checked at run time
and by mypy) and the same behaviour, run against each one: a window never holds more than the
capacity, a refund or restamp touches one ticket's entries only, a pause only ever extends.

PostgreSQL's bucket keeps the server's time, which no `VirtualClock` moves: it runs the tests
that do not move time here, and tests/quota/test_pg_ledger.py holds its timed ones.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from ample_batch.quota.bucket import Bucket, MemoryBucket
from ample_batch.quota.clock import VirtualClock
from ample_batch.quota.pg_ledger import PgLedgerBucket, PgLedgers
from ample_batch.quota.sqlite_ledger import SQLiteLedgerBucket, SQLiteLedgerFile

MakeBucket = Callable[[int, int, VirtualClock], Bucket]

BACKENDS = ["memory", "sqlite"]
"""The backends whose time a VirtualClock drives."""

EVERY_BACKEND = [*BACKENDS, "postgres"]


def _protocol_members() -> list[str]:
    return sorted(
        name
        for name, value in vars(Bucket).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )


def _signature(function: Callable[..., object]) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("implementation", [MemoryBucket, SQLiteLedgerBucket, PgLedgerBucket])
def test_each_backend_has_every_member_with_the_protocol_signature(implementation: type) -> None:
    members = _protocol_members()
    assert {"try_acquire", "in_window", "restamp_ticket", "refund_ticket", "close"} <= set(members)
    for name in members:
        wanted = vars(Bucket)[name]
        if isinstance(wanted, property):
            continue  # an attribute set in __init__: checked on instances below
        assert _signature(getattr(implementation, name)) == _signature(wanted), name


def test_the_backends_satisfy_the_protocol_for_mypy(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    check = tmp_path / "check_buckets.py"
    check.write_text(
        "from ample_batch.quota.bucket import Bucket, MemoryBucket\n"
        "from ample_batch.quota.pg_ledger import PgLedgerBucket\n"
        "from ample_batch.quota.sqlite_ledger import SQLiteLedgerBucket\n\n\n"
        "def as_buckets(\n"
        "    memory: MemoryBucket, shared: SQLiteLedgerBucket, hosts: PgLedgerBucket\n"
        ") -> list[Bucket]:\n"
        "    return [memory, shared, hosts]\n"
    )
    options = ["--strict", "--ignore-missing-imports", "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *options, str(check)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _buckets(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeBucket]:
    """Buckets of one backend: a SQLite file, or a key in a fresh PostgreSQL database, each."""
    opened: list[SQLiteLedgerFile | PgLedgers] = []
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""

    def make(capacity: int, window_ms: int, clock: VirtualClock) -> Bucket:
        if backend == "memory":
            return MemoryBucket(capacity, window_ms, clock)
        if backend == "postgres":
            ledgers = PgLedgers(url, key_id=f"key{len(opened)}")
            opened.append(ledgers)
            return ledgers.bucket("usage", capacity, window_ms)
        file = SQLiteLedgerFile(tmp_path / f"ledger-{len(opened)}.sqlite")
        opened.append(file)
        return file.bucket("usage", capacity, window_ms, clock)

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=BACKENDS)
def make_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBucket]:
    """Buckets of a backend whose time the VirtualClock passed drives."""
    yield from _buckets(request.param, tmp_path, request)


@pytest.fixture(params=EVERY_BACKEND)
def any_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBucket]:
    """Buckets of every backend, for the tests that never move time."""
    yield from _buckets(request.param, tmp_path, request)


def test_instances_are_buckets(any_bucket: MakeBucket) -> None:
    bucket = any_bucket(10, 1000, VirtualClock())
    assert isinstance(bucket, Bucket)
    assert (bucket.capacity, bucket.window_ms) == (10, 1000)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 10), st.integers(0, 700)),  # (weight, ms to wait first)
        min_size=1,
        max_size=40,
    )
)
def test_a_window_never_holds_more_than_the_capacity(
    backend: str, steps: list[tuple[int, int]]
) -> None:
    capacity, window_ms = 10, 1000
    clock = VirtualClock(start=1_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        file = SQLiteLedgerFile(Path(tmp) / "ledger.sqlite")
        bucket: Bucket = (
            MemoryBucket(capacity, window_ms, clock)
            if backend == "memory"
            else file.bucket("usage", capacity, window_ms, clock)
        )
        admitted: list[tuple[int, int]] = []
        try:
            for n, (weight, gap_ms) in enumerate(steps):
                clock.advance(gap_ms / 1000)
                wait = bucket.try_acquire(f"t{n}", weight)
                if wait == 0:
                    admitted.append((bucket.now(), weight))
                    continue
                assert wait >= 1
                # The wait is exact: a ms earlier it would still not fit, at the wait it does.
                clock.advance((wait - 1) / 1000)
                assert bucket.try_acquire(f"t{n}", weight) > 0
                clock.advance(0.001)
                assert bucket.try_acquire(f"t{n}", weight) == 0
                admitted.append((bucket.now(), weight))
            for start, _ in admitted:
                held = sum(w for t, w in admitted if start <= t <= start + window_ms)
                assert held <= capacity
            assert bucket.in_window(bucket.now() - window_ms) <= capacity
        finally:
            file.close()


def test_refund_deletes_exactly_one_ticket(any_bucket: MakeBucket) -> None:
    clock = VirtualClock()
    bucket = any_bucket(100, 10_000, clock)
    since = bucket.now()
    assert bucket.try_acquire("mine:1", 30) == 0
    assert bucket.try_acquire("theirs:1", 20) == 0
    assert bucket.try_acquire("mine:2", 50) == 0
    assert bucket.try_acquire("x", 1) > 0  # full
    bucket.refund_ticket("mine:2")
    assert bucket.in_window(since) == 50
    bucket.refund_ticket("mine:2")  # twice is harmless
    bucket.refund_ticket("never-acquired")
    assert bucket.in_window(since) == 50
    assert bucket.try_acquire("mine:3", 50) == 0


def test_restamp_moves_one_ticket_and_never_earlier(make_bucket: MakeBucket) -> None:
    clock = VirtualClock()
    bucket = make_bucket(100, 1000, clock)
    t0 = bucket.now()
    assert bucket.try_acquire("mine", 10) == 0
    clock.advance(0.5)
    assert bucket.try_acquire("theirs", 5) == 0
    clock.advance(0.3)
    bucket.restamp_ticket("mine", bucket.now())
    bucket.restamp_ticket("mine", t0)  # earlier: the later stamp stays
    assert bucket.stamp_from_newest(0) == t0 + 800
    assert bucket.stamp_from_newest(9) == t0 + 800
    assert bucket.stamp_from_newest(10) == t0 + 500  # theirs, where they were
    assert bucket.stamp_from_newest(15) is None
    assert bucket.in_window(t0 + 501) == 10


def test_forget_before_drops_only_older_entries(make_bucket: MakeBucket) -> None:
    clock = VirtualClock()
    bucket = make_bucket(100, 1000, clock)
    t0 = bucket.now()
    assert bucket.try_acquire("old", 3) == 0
    clock.advance(2.0)
    assert bucket.try_acquire("new", 4) == 0
    bucket.forget_before(t0 + 1)
    assert bucket.in_window(0) == 4
    bucket.forget_before(t0 + 2000)  # an entry stamped exactly then stays
    assert bucket.in_window(0) == 4


def test_a_pause_extends_and_never_shortens(any_bucket: MakeBucket) -> None:
    clock = VirtualClock()
    bucket = any_bucket(10, 1000, clock)
    assert bucket.paused_until() == 0
    now = bucket.now()
    bucket.pause_until(now + 3000)
    bucket.pause_until(now + 1000)
    assert bucket.paused_until() == now + 3000
    bucket.pause_until(now + 5000)
    assert bucket.paused_until() == now + 5000
    bucket.close()

"""The PostgreSQL ledgers keep the limits across hosts, on the server's clock.

Hosts are processes here, each with its own clock, skewed on purpose by whole seconds: the
stamps (read back from the database, the server's clock) must still never put more than the
capacity in any window. tests/quota/test_bucket.py runs the `Bucket` contract's untimed tests
on this backend too.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_schedule import max_in_window

from ample_batch import pg
from ample_batch.errors import StateUnavailable
from ample_batch.limits import Limit
from ample_batch.quota import pg_ledger
from ample_batch.quota.clock import SystemClock
from ample_batch.quota.pg_ledger import PgLedgers
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler


class SkewedClock(SystemClock):
    """A host whose clock is `offset` seconds off (it sleeps true durations)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def entries(url: str, key: str, ledger: str = "usage") -> list[tuple[float, int]]:
    """The ledger's entries as (server epoch ms, units), read straight from the tables."""
    conn = pg.connect(url, migrate=False)
    try:
        rows = conn.execute(
            "SELECT stamp_ms, weight FROM ledger_entries WHERE key_id = %s AND ledger = %s",
            (key, ledger),
        ).fetchall()
    finally:
        conn.close()
    return [(float(stamp), int(weight)) for stamp, weight in rows]


def test_stamps_and_now_are_the_servers_whatever_the_host_clock(pg_url: str) -> None:
    config = ScheduleConfig(usage_limit=Limit(100, 1.0), state_url=pg_url, key_id="skewed")
    before = time.time() * 1000
    with Scheduler(config, SkewedClock(-3600.0)) as scheduler:
        asyncio.run(scheduler.admit(10))
    after = time.time() * 1000
    [(stamp, units)] = entries(pg_url, "skewed")
    # The server runs on this machine: its clock is ours, the skewed host's is an hour off.
    assert before - 50 <= stamp <= after + 50 and units == 10


def test_a_full_window_answers_the_exact_wait_on_the_servers_clock(pg_url: str) -> None:
    ledgers = PgLedgers(pg_url, key_id="exact")
    try:
        bucket = ledgers.bucket("usage", 10, 60_000)
        assert bucket.try_acquire("a", 6) == 0
        assert bucket.try_acquire("b", 4) == 0
        (first, _), (second, _) = bucket.entries()
        low = bucket.now()
        wait = bucket.try_acquire("c", 3)
        high = bucket.now()
        # Room for 3 comes when "a" (the oldest 6) leaves: a ms after its window ends.
        assert first + 60_000 + 1 - high <= wait <= first + 60_000 + 1 - low
        # Units counted from the newest: "b" holds 0 to 3, "a" 4 to 9.
        assert [bucket.stamp_from_newest(n) for n in (0, 3, 4, 9, 10)] == [
            second,
            second,
            first,
            first,
            None,
        ]
        assert bucket.in_window(low - 60_000) == 10
        # Restamping moves only "b", and never earlier; forgetting spares the restamped one.
        bucket.restamp_ticket("b", high + 5000)
        bucket.restamp_ticket("b", low)
        assert bucket.stamp_from_newest(0) == high + 5000
        bucket.forget_before(high + 1)
        assert list(bucket.entries()) == [(high + 5000, 4)]
    finally:
        ledgers.close()


_HOST = r"""
import asyncio, sys, time
from pathlib import Path
from ample_batch.limits import Limit
from ample_batch.quota.clock import SystemClock
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler

url, barrier, me, skew = sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])

class SkewedClock(SystemClock):
    def now(self):
        return time.time() + skew

config = ScheduleConfig(usage_limit=Limit(100, 0.5), margin=0.0, state_url=url, key_id="hosts")

async def main():
    with Scheduler(config, SkewedClock()) as scheduler:
        (barrier / f"ready-{me}").touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < 2:
            if time.monotonic() > deadline:
                sys.exit("the other host never got ready")
            await asyncio.sleep(0.002)
        for _ in range(6):
            await scheduler.admit(25)

asyncio.run(main())
"""


def test_two_hosts_with_skewed_clocks_never_exceed_the_capacity(
    pg_url: str, tmp_path: Path
) -> None:
    # 3 s apart, each way: on a shared SQLite ledger each would count a different window.
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", _HOST, pg_url, str(tmp_path), name, skew],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, skew in (("a", "3.0"), ("b", "-3.0"))
    ]
    outcomes = [host.communicate(timeout=120) for host in hosts]
    errors = [err for host, (_, err) in zip(hosts, outcomes, strict=True) if host.returncode]
    assert not errors, "\n".join(errors)

    rows = entries(pg_url, "hosts")
    assert sum(units for _, units in rows) == 300
    assert max_in_window(rows, 500) <= 100  # epoch ms: a closed window of 500 ms
    # 12 batches of 25 at 100/0.5 s take 3 windows after the first.
    assert max(ms for ms, _ in rows) - min(ms for ms, _ in rows) >= 1000


def test_a_pause_reaches_every_host_on_the_key(pg_url: str) -> None:
    config = ScheduleConfig(usage_limit=Limit(100, 60.0), state_url=pg_url, key_id="paused")
    with Scheduler(config, SkewedClock(5.0)) as one, Scheduler(config, SkewedClock(-5.0)) as two:
        one.pause_submissions(30)
        assert 29 < two.wait_for(1) <= 30


def test_a_lost_connection_is_reopened(pg_url: str) -> None:
    ledgers = PgLedgers(pg_url, key_id="lost")
    try:
        bucket = ledgers.bucket("usage", 10, 60_000)
        assert bucket.try_acquire("a", 3) == 0
        conn = pg.connect(pg_url, migrate=False)
        try:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            conn.close()
        assert bucket.try_acquire("b", 3) == 0
        assert bucket.in_window(0) == 6
        # An acquire retried after its COMMIT's answer was lost is admitted once, not twice.
        assert bucket.try_acquire("b", 3) == 0
        assert bucket.in_window(0) == 6
    finally:
        ledgers.close()


def test_a_database_that_stays_away_is_state_unavailable(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_ledger, "RECONNECT_DELAYS", (0.01, 0.01))
    ledgers = PgLedgers(pg_url, key_id="gone")
    bucket = ledgers.bucket("usage", 10, 60_000)
    # The server "moves" to a port nothing listens on: every reconnection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ledgers.url = re.sub(r":\d+/", f":{port}/", pg_url)
    conn = pg.connect(pg_url, migrate=False)
    try:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        conn.close()
    with pytest.raises(StateUnavailable, match="run the same command again") as caught:
        bucket.try_acquire("a", 1)
    assert pg_url.split(":")[2].split("@")[0] not in str(caught.value)  # no password
    ledgers.close()

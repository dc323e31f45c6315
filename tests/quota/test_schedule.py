"""The scheduler keeps both limits, runs at the limit, and shares its ledgers.

Limits are asserted from recorded timestamps: no closed window [t, t + period] may hold more
than the limit's count (the strict reading). Most tests run on a `VirtualClock`; two use the
real clock at compressed limits, one of them across two OS processes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from helpers import make_client

from ample_batch.api.client import ValidationClient
from ample_batch.fake.server import RunningFake
from ample_batch.limits import Limit
from ample_batch.quota.clock import SystemClock, VirtualClock
from ample_batch.quota.ideal import ideal_last_submission
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler, key_id

Events = list[tuple[float, int]]


def max_in_window(events: Events, period: float) -> int:
    """The most units any closed window [t, t + period] holds."""
    events = sorted(events)
    best = total = end = 0
    for start_time, start_units in events:
        while end < len(events) and events[end][0] <= start_time + period:
            total += events[end][1]
            end += 1
        best = max(best, total)
        total -= start_units
    return best


async def submit(scheduler: Scheduler, batches: int, chunk: int) -> Events:
    """Admit `batches` batches of `chunk` emails back to back; when each was admitted."""
    events = []
    for _ in range(batches):
        await scheduler.admit(chunk)
        events.append((scheduler.clock.now(), chunk))
    return events


async def send(scheduler: Scheduler, requests: int) -> Events:
    """`requests` concurrent request() calls; when each got its slot."""
    events: Events = []

    async def one() -> None:
        await scheduler.request()
        events.append((scheduler.clock.now(), 1))

    await asyncio.gather(*(one() for _ in range(requests)))
    return events


def ledger_rows(ledger_dir: Path, key: str, table: str) -> Events:
    """The entries in a shared ledger file, as (epoch ms, units)."""
    with sqlite3.connect(ledger_dir / f"ledger-{key}.sqlite") as conn:
        rows = conn.execute(
            f"SELECT item_timestamp, COUNT(*) FROM {table} GROUP BY item_timestamp"
        ).fetchall()
    conn.close()
    return [(float(ms), count) for ms, count in rows]


@pytest.fixture(params=["memory", "sqlite"])
def ledger_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Both ledger backends: in memory, and shared SQLite files."""
    return None if request.param == "memory" else tmp_path / "ledgers"


# --- throughput at the limit ---------------------------------------------------------------


async def test_quota_bound_run_submits_its_last_batch_within_2_percent(
    ledger_dir: Path | None,
) -> None:
    usage = Limit(1000, 2.0)
    config = ScheduleConfig(usage_limit=usage, ledger_dir=ledger_dir)
    with Scheduler(config, VirtualClock()) as scheduler:
        events = await submit(scheduler, batches=12, chunk=1000)

    ideal = ideal_last_submission(12_000, usage, 1000)
    span = events[-1][0] - events[0][0]
    assert ideal == 22.0
    assert ideal < span <= ideal * 1.02
    assert max_in_window(events, usage.period) <= usage.count


async def test_smaller_chunks_also_run_at_the_limit() -> None:
    usage = Limit(1000, 2.0)
    with Scheduler(ScheduleConfig(usage_limit=usage), VirtualClock()) as scheduler:
        events = await submit(scheduler, batches=33, chunk=300)
        await scheduler.admit(100)  # the remainder of 10,000 emails
        events.append((scheduler.clock.now(), 100))

    ideal = ideal_last_submission(10_000, usage, 300)
    span = events[-1][0] - events[0][0]
    assert ideal == 20.0  # 3 batches a window; the remainder fits beside the last three
    assert ideal < span <= ideal * 1.02
    assert max_in_window(events, usage.period) <= usage.count


async def test_quota_bound_run_on_the_real_clock(tmp_path: Path) -> None:
    usage = Limit(1000, 1.0)
    config = ScheduleConfig(usage_limit=usage, ledger_dir=tmp_path)
    with Scheduler(config, SystemClock()) as scheduler:
        # Three batches, two real waits: each may overshoot by 15 ms (1.5% of the window).
        events = await submit(scheduler, batches=3, chunk=1000)

    span = events[-1][0] - events[0][0]
    assert ideal_last_submission(3000, usage, 1000) == 2.0
    assert 2.0 < span <= 2.0 * 1.02
    assert max_in_window(ledger_rows(tmp_path, "default", "usage"), 1000) <= 1000


async def test_request_limit_holds_over_a_burst(ledger_dir: Path | None) -> None:
    rate = Limit(60, 5.0)
    config = ScheduleConfig(rate_limit=rate, ledger_dir=ledger_dir)
    with Scheduler(config, VirtualClock()) as scheduler:
        t0 = scheduler.clock.now()
        events = await send(scheduler, 300)

    assert len(events) == 300
    assert max_in_window(events, rate.period) <= rate.count
    assert 20.0 < events[-1][0] - t0 <= 20.0 * 1.02  # 5 windows' worth: the last 4 waited


async def test_concurrent_pollers_do_not_slow_a_quota_bound_run() -> None:
    usage, rate = Limit(1000, 2.0), Limit(60, 5.0)
    clock = VirtualClock()
    with Scheduler(ScheduleConfig(usage_limit=usage, rate_limit=rate), clock) as scheduler:
        done = asyncio.Event()
        submitted: Events = []
        requests: Events = []

        async def submitter() -> None:
            for _ in range(12):
                await scheduler.admit(1000)
                await scheduler.request()  # the POST
                submitted.append((clock.now(), 1000))
                requests.append((clock.now(), 1))
            done.set()

        async def poller(offset: float) -> None:
            while not done.is_set():
                await scheduler.request()
                requests.append((clock.now(), 1))
                await clock.sleep(0.7 + offset)  # each honours its own Retry-After

        await asyncio.gather(submitter(), *(poller(i / 10) for i in range(5)))

    span = submitted[-1][0] - submitted[0][0]
    assert 22.0 < span <= 22.0 * 1.02  # sleeping pollers do not push virtual time on
    assert max_in_window(submitted, usage.period) <= usage.count
    assert max_in_window(requests, rate.period) <= rate.count
    assert len(requests) > 100


# --- sharing and remembering ------------------------------------------------------------------


async def test_two_schedulers_on_one_ledger_dir_share_both_limits(tmp_path: Path) -> None:
    usage, rate = Limit(1000, 2.0), Limit(60, 5.0)
    config = ScheduleConfig(usage_limit=usage, rate_limit=rate, ledger_dir=tmp_path)
    clock = VirtualClock()
    with Scheduler(config, clock) as one, Scheduler(config, clock) as two:
        t0 = clock.now()
        admitted = await asyncio.gather(submit(one, 6, 500), submit(two, 6, 500))
        t1 = clock.now()
        sent = await asyncio.gather(send(one, 60), send(two, 60))

    both = admitted[0] + admitted[1]
    assert max_in_window(both, usage.period) <= usage.count
    # 6,000 emails take 5 windows together; each alone would have needed 2.
    assert max(t for t, _ in both) - t0 >= ideal_last_submission(6000, usage, 500) == 10.0
    assert max_in_window(sent[0] + sent[1], rate.period) <= rate.count
    assert max(t for t, _ in sent[0] + sent[1]) - t1 > rate.period


_CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
from ample_batch.limits import Limit
from ample_batch.quota.scheduler import ScheduleConfig, Scheduler

ledger_dir, me, batches, chunk = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = ScheduleConfig(usage_limit=Limit(200, 1.0), ledger_dir=ledger_dir, key_id="shared")

async def main():
    with Scheduler(config) as scheduler:
        # A barrier, not a guess: neither starts before both have opened the ledger.
        (ledger_dir / f"ready-{me}").touch()
        # Generous: on a loaded CI machine a second interpreter can take long to start.
        deadline = time.monotonic() + 120
        while len(list(ledger_dir.glob("ready-*"))) < 2:
            if time.monotonic() > deadline:
                sys.exit("the other process never got ready")
            await asyncio.sleep(0.002)
        start = time.time()
        for _ in range(batches):
            await scheduler.admit(chunk)
        print(json.dumps({"start": start, "end": time.time()}))

asyncio.run(main())
"""


def test_two_processes_share_the_usage_limit(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "ledgers"
    ledger_dir.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(ledger_dir), name, "6", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outcomes = [child.communicate(timeout=180) for child in children]
    errors = [err for child, (_, err) in zip(children, outcomes, strict=True) if child.returncode]
    assert not errors, "\n".join(errors)  # both children's, since one's failure stalls the other
    runs = [json.loads(out) for out, _ in outcomes]

    rows = ledger_rows(ledger_dir, "shared", "usage")
    assert sum(units for _, units in rows) == 600
    assert max_in_window(rows, 1000) <= 200  # epoch ms, so the window is 1000
    # They ran at once, and 12 batches of 50 at 200/1s take 2 windows together (1 alone).
    assert max(run["start"] for run in runs) < min(run["end"] for run in runs)
    span_ms = max(ms for ms, _ in rows) - min(ms for ms, _ in rows)
    assert span_ms >= ideal_last_submission(600, Limit(200, 1.0), 50) * 1000 == 2000


async def test_a_new_scheduler_remembers_the_last_window(tmp_path: Path) -> None:
    config = ScheduleConfig(
        usage_limit=Limit(1000, 2.0), rate_limit=Limit(60, 5.0), ledger_dir=tmp_path
    )
    clock = VirtualClock()
    t0 = clock.now()
    with Scheduler(config, clock) as first:
        await first.admit(800)  # one request slot for its POST
        await send(first, 59)
    clock.advance(1.0)

    with Scheduler(config, clock) as second:
        assert second.usage_in_window() == 800
        assert second.wait_for(200) == 0
        assert second.wait_for(201) == pytest.approx(1.011)  # the window is 2 s + 10 ms margin
        await second.admit(201)  # its POST slot waits for the first process's 60 requests
        assert clock.now() - t0 > 5.0


async def test_old_entries_are_deleted_and_recent_ones_kept(tmp_path: Path) -> None:
    config = ScheduleConfig(usage_limit=Limit(1000, 2.0), ledger_dir=tmp_path)
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        await scheduler.admit(500)
        clock.advance(600)
        await scheduler.admit(300)  # 10 minutes later: kept, another process may count them
        assert len(ledger_rows(tmp_path, "default", "usage")) == 2
        clock.advance(3 * 3600)
        await scheduler.admit(200)
        assert ledger_rows(tmp_path, "default", "usage") == [(clock.now() * 1000, 200)]
        assert scheduler.usage_in_window() == 200


# --- pauses -----------------------------------------------------------------------------------


async def test_pause_requests_delays_every_request_the_post_included() -> None:
    with Scheduler(ScheduleConfig(), VirtualClock()) as scheduler:
        t0 = scheduler.clock.now()
        scheduler.pause_requests(3.0)
        scheduler.pause_requests(1.0)  # a shorter pause never cuts a longer one short
        await scheduler.request()
        assert scheduler.clock.now() - t0 == pytest.approx(3.0)
        scheduler.pause_requests(2.0)
        await scheduler.admit(10)  # the POST's request slot is taken with the quota
        assert scheduler.clock.now() - t0 == pytest.approx(5.0)


async def test_pause_submissions_delays_admit_and_shows_in_wait_for() -> None:
    with Scheduler(ScheduleConfig(), VirtualClock()) as scheduler:
        t0 = scheduler.clock.now()
        scheduler.pause_submissions(5.0)
        assert scheduler.wait_for(1) == pytest.approx(5.0)
        assert scheduler.wait_for(0) == pytest.approx(5.0)
        await scheduler.request()
        assert scheduler.clock.now() == t0
        await scheduler.admit(10)
        assert scheduler.clock.now() - t0 == pytest.approx(5.0)
        assert scheduler.wait_for(1) == 0


async def test_pauses_reach_every_scheduler_on_the_key(tmp_path: Path) -> None:
    config = ScheduleConfig(ledger_dir=tmp_path)
    clock = VirtualClock()
    t0 = clock.now()
    with Scheduler(config, clock) as one, Scheduler(config, clock) as two:
        one.pause_submissions(30.0)
        one.pause_requests(2.0)
        assert two.wait_for(1) == pytest.approx(30.0)
        await two.request()
        assert clock.now() - t0 == pytest.approx(2.0)
    with Scheduler(config, clock) as three:  # and a later process
        assert three.wait_for(1) == pytest.approx(28.0)


# --- the contract's edges ---------------------------------------------------------------------


async def test_a_batch_larger_than_the_limit_is_refused() -> None:
    with Scheduler(ScheduleConfig(usage_limit=Limit(1000, 2.0)), VirtualClock()) as scheduler:
        with pytest.raises(ValueError, match="split it into batches of at most 1000"):
            await scheduler.admit(1001)
        with pytest.raises(ValueError):
            scheduler.wait_for(1001)
        with pytest.raises(ValueError):
            await scheduler.admit(-1)
        await scheduler.admit(0)
        assert scheduler.usage_in_window() == 0
        await scheduler.admit(1000)  # exactly the count fits
        assert scheduler.usage_in_window() == 1000


async def test_wait_for_predicts_admit(ledger_dir: Path | None) -> None:
    config = ScheduleConfig(usage_limit=Limit(1000, 2.0), ledger_dir=ledger_dir)
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        for size, gap in [(400, 0.0), (500, 0.5), (300, 0.25), (1000, 0.0), (1, 1.0), (999, 0)]:
            clock.advance(gap)
            predicted = scheduler.wait_for(size)
            before = clock.now()
            await scheduler.admit(size)
            assert clock.now() - before == pytest.approx(predicted, abs=1e-6)
            assert scheduler.wait_for(0) == 0


def test_key_id_names_a_key_without_containing_it() -> None:
    keys = ["am_live_4f9c2e71b0d84a5f9e3c", "sk-Zx81QpL0mN2vB7", "0123456789abcdef0123456789"]
    ids = [key_id(key) for key in keys]
    assert len(set(ids)) == len(keys)
    for key, ident in zip(keys, ids, strict=True):
        assert len(ident) == 16 and int(ident, 16) >= 0
        assert key not in ident and ident not in key
        assert key_id(key) == ident  # stable across processes and runs


def test_config_defaults_and_validation() -> None:
    config = ScheduleConfig()
    assert config.usage_limit == Limit(15000, 3600.0)
    assert config.rate_limit == Limit(500, 60.0)
    assert config.margin_for(config.usage_limit) == 2.0  # 0.5% of an hour, capped
    assert config.margin_for(config.rate_limit) == pytest.approx(0.3)
    assert ScheduleConfig(margin=0).margin_for(config.usage_limit) == 0
    assert config.ledger_path is None
    assert ScheduleConfig(ledger_dir=Path("/s"), key_id="ab12").ledger_path == Path(
        "/s/ledger-ab12.sqlite"
    )
    for bad in [
        {"key_id": "../etc"},
        {"key_id": ""},
        {"margin": -1.0},
        {"usage_limit": Limit(0, 3600.0)},
        {"rate_limit": Limit(10, 0.0)},
    ]:
        with pytest.raises(ValueError):
            ScheduleConfig(**bad)  # type: ignore[arg-type]


async def test_close_is_idempotent_and_async_with_works(tmp_path: Path) -> None:
    async with Scheduler(ScheduleConfig(ledger_dir=tmp_path / "new" / "dir")) as scheduler:
        await scheduler.admit(5)
        await scheduler.request()
    scheduler.close()
    assert (tmp_path / "new" / "dir" / "ledger-default.sqlite").exists()


# --- the virtual clock ------------------------------------------------------------------------


async def test_virtual_clock_wakes_concurrent_sleepers_in_deadline_order() -> None:
    clock = VirtualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    started = time.perf_counter()
    await asyncio.gather(sleeper("c", 3600), sleeper("a", 1), sleeper("b", 2.5))
    assert woke == [("a", 101.0), ("b", 102.5), ("c", 3700.0)]  # time is the max, not the sum
    assert time.perf_counter() - started < 1.0


async def test_virtual_clock_skips_cancelled_sleepers() -> None:
    clock = VirtualClock(start=0.0)
    doomed = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0)
    doomed.cancel()
    await clock.sleep(20)
    assert clock.now() == 20.0
    await clock.sleep(0)
    await clock.sleep(-1)
    assert clock.now() == 20.0


@pytest.mark.parametrize("shared", [False, True])
async def test_accepted_moves_the_batch_stamp_to_the_answer(tmp_path: Path, shared: bool) -> None:
    # The POST took 0.5 s to be answered: the server may have received it that late, so the
    # next batch must wait a full window (plus margin) from the answer, not from admission.
    config = ScheduleConfig(
        usage_limit=Limit(1000, 2.0), margin=0.0, ledger_dir=tmp_path if shared else None
    )
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        await scheduler.admit(600)
        second = await scheduler.admit(400)
        clock.advance(0.5)
        scheduler.accepted(second)
        answered = clock.now()
        clock.advance(1.6)  # 2.1 s after the first admission: those 600 have expired
        assert scheduler.usage_in_window() == 400
        assert scheduler.wait_for(600) == 0
        assert scheduler.wait_for(601) == pytest.approx(answered + 2.0 - clock.now(), abs=0.002)


# --- tickets: a process moves and refunds only its own stamps (issue 11, section 6) ----------


def ledger_names(tmp_path: Path, table: str) -> list[tuple[str, int]]:
    db = sqlite3.connect(tmp_path / "ledger-default.sqlite")
    try:
        return db.execute(f"SELECT name, item_timestamp FROM {table} ORDER BY rowid").fetchall()
    finally:
        db.close()


async def test_accepted_never_moves_another_process_rows(tmp_path: Path) -> None:
    config = ScheduleConfig(usage_limit=Limit(1000, 10.0), margin=0.0, ledger_dir=tmp_path)
    clock = VirtualClock()
    t0_ms = round(clock.now() * 1000)
    with Scheduler(config, clock) as mine, Scheduler(config, clock) as other:
        admission = await mine.admit(10)
        clock.advance(1.0)
        await other.admit(5)  # the other process's rows are now the newest
        clock.advance(1.0)
        mine.accepted(admission)  # the old restamp moved the newest 10: 5 of them were theirs
        rows = ledger_names(tmp_path, "usage")
    by_name: dict[str, set[int]] = {}
    for name, stamp in rows:
        by_name.setdefault(name, set()).add(stamp)
    assert sorted(map(sorted, by_name.values())) == [[t0_ms + 1000], [t0_ms + 2000]]
    assert sum(stamp == t0_ms + 1000 for _, stamp in rows) == 5  # theirs, where they were
    assert sum(stamp == t0_ms + 2000 for _, stamp in rows) == 10  # ours, at the answer


@pytest.mark.parametrize("shared", [False, True])
async def test_refund_deletes_exactly_this_admission(tmp_path: Path, shared: bool) -> None:
    config = ScheduleConfig(usage_limit=Limit(100, 10.0), ledger_dir=tmp_path if shared else None)
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        await scheduler.admit(30)
        refused = await scheduler.admit(50)
        await scheduler.admit(20)
        scheduler.refund(refused)
        assert scheduler.usage_in_window() == 50
        assert scheduler.wait_for(50) == 0
        scheduler.refund(refused)  # twice is harmless
        assert scheduler.usage_in_window() == 50


async def test_requests_are_restamped_at_their_answer(tmp_path: Path) -> None:
    config = ScheduleConfig(rate_limit=Limit(2, 1.0), margin=0.0, ledger_dir=tmp_path)
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        first = await scheduler.request()
        await scheduler.request()
        clock.advance(0.5)  # the first request's answer took half a second
        scheduler.answered(first)
        t_answer = clock.now()
        await scheduler.request()  # the window is full until the second's stamp expires...
        assert clock.now() == pytest.approx(t_answer + 0.5)
        await scheduler.request()  # ...and then until the first's answer, not its send
        assert clock.now() == pytest.approx(t_answer + 1.0)


@pytest.mark.parametrize("seconds", [86400.0, float("inf"), 1e999])
async def test_pauses_are_bounded_by_the_usage_window(tmp_path: Path, seconds: float) -> None:
    config = ScheduleConfig(usage_limit=Limit(1000, 60.0), margin=0.0, ledger_dir=tmp_path)
    clock = VirtualClock()
    with Scheduler(config, clock) as scheduler:
        t0 = clock.now()
        scheduler.pause_requests(seconds)
        scheduler.pause_submissions(seconds)
        scheduler.pause_requests(float("nan"))
        scheduler.pause_submissions(-5.0)
        assert scheduler.wait_for(1) == pytest.approx(60.0)
        await scheduler.admit(1)
        assert clock.now() - t0 == pytest.approx(60.0)


async def test_two_processes_keep_the_rate_limit_as_the_server_counts_it(
    fake_api: Callable[..., Awaitable[RunningFake]],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    # Requests take a varying time to reach the server: stamped before they leave, the
    # server would count some of them later than our ledger does (and answer 429).
    fake = await fake_api(rate_limit=Limit(20, 1.0), arrival_jitter=0.06, seed=3)
    config = ScheduleConfig(rate_limit=Limit(20, 1.0), ledger_dir=tmp_path, key_id="shared")
    with Scheduler(config) as first, Scheduler(config) as second:
        clients = [make_client(session, fake.url, throttle=s) for s in (first, second)]

        async def hammer(client: ValidationClient) -> None:
            for _ in range(10):
                await client.check_key()

        await asyncio.gather(*(hammer(client) for client in clients for _ in range(4)))
    summary = fake.api.summary()
    assert summary.requests >= 80
    assert summary.rate_limited == 0

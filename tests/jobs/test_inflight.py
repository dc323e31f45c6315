"""Issue 11, 3: an email in flight in another job on the same key is never bought again.

A nightly regenerated export (rows reordered, some added) is a new job; two jobs may share
emails. Each email must be POSTed once over all of them, and every job's output must carry
the verdicts the other's batch paid for.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

from helpers import (
    FakeInThread,
    batch_states,
    expected_result,
    lead_rows,
    popen_cli,
    read_csv,
    wait_until,
    write_leads,
)


def _args(fake: FakeInThread, src: Path, state: Path, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, "--state-dir", str(state), *extra]


def _assert_verdicts(src: Path, out: Path) -> None:
    rows = read_csv(out)
    assert len(rows) == len(read_csv(src))
    for row in rows:
        assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])


def test_a_regenerated_input_adopts_the_previous_jobs_batch(tmp_path: Path) -> None:
    rows = lead_rows(300)
    src = write_leads(tmp_path / "leads.csv", rows)
    state = tmp_path / "state"
    # Slow processing: the first job's batch is still running when it is stopped (its 300
    # emails take 2.5 s; the stop comes within ~10 ms of the batch being seen running).
    with FakeInThread(retry_after=0.2, emails_per_second=120) as fake:
        first = popen_cli(*_args(fake, src, state, "--usage-limit", "1000/2s"))
        wait_until(lambda: [s for s, _ in batch_states(state)] == ["running"])
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=30)
        assert first.returncode == 75, err

        # Tonight's export: the same people in another order, and 100 new ones.
        regenerated = rows + lead_rows(100, start=1000)
        random.Random(7).shuffle(regenerated)
        write_leads(src, regenerated)
        second = popen_cli(*_args(fake, src, state, "--usage-limit", "1000/2s"))
        _out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err
        summary = fake.summary()

    # The fake's log: every email POSTed exactly once over both runs.
    assert summary.emails_submitted_twice == 0
    assert summary.emails_submitted == 400
    assert summary.emails_charged_twice == 0
    _assert_verdicts(src, tmp_path / "leads.validated.csv")


def test_two_concurrent_jobs_buy_each_shared_email_once(tmp_path: Path) -> None:
    first = write_leads(tmp_path / "a.csv", lead_rows(2000))
    second = write_leads(tmp_path / "b.csv", lead_rows(2000, start=1000))
    state = tmp_path / "state"
    # Six batches of 500 on the shared ledger, half a second apart: the two runs overlap.
    limits = ("--usage-limit", "500/0.5s", "--rate-limit", "200/1s")
    with FakeInThread(retry_after=0.2, emails_per_second=2000) as fake:
        procs = [popen_cli(*_args(fake, src, state, *limits)) for src in (first, second)]
        for proc in procs:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        summary = fake.summary()

    assert summary.emails_submitted_twice == 0
    assert summary.emails_submitted == 3000
    assert summary.emails_charged_twice == 0
    _assert_verdicts(first, tmp_path / "a.validated.csv")
    _assert_verdicts(second, tmp_path / "b.validated.csv")


def _job(store, name: str, key: str = "k1"):
    return store.open_job(
        input_path=f"/data/{name}.csv", fingerprint=name, email_column="Email",
        output_path=None, cache_ttl=86400.0, key_id=key, base_url="https://api.example",
    )  # fmt: skip


def test_adoption_in_the_store(backend) -> None:
    from ample_batch.jobs.records import BatchState

    with backend.open() as store:
        a, b, other_key = _job(store, "a"), _job(store, "b"), _job(store, "c", key="k2")
        store.plan(a.id, cached=[], new=["e1@x.co", "e2@x.co"], chunk_size=10)
        (owner,) = store.batches(a.id)
        assert not store.mark_submitting(owner.id).changed
        store.mark_running(owner.id, remote_id="r1", remote_href="/email-validations/r1")

        # Another key's job shares nothing with it; job b adopts what a has in flight.
        assert store.adopt_in_flight(other_key.id, ["e1@x.co"]) == set()
        assert store.adopt_in_flight(b.id, ["e1@x.co", "e2@x.co", "e3@x.co"]) == {
            "e1@x.co",
            "e2@x.co",
        }
        store.plan(b.id, cached=[], new=["e3@x.co"], chunk_size=10)
        (waiting,) = store.batches(b.id, BatchState.WAITING)
        assert waiting.adopts == owner.id and waiting.size == 2
        assert store.progress(b.id).pending == 3  # not complete until a's verdicts are in

        # a's batch gets e1's verdict only, then ends: b takes e1, and plans e2 itself.
        store.mark_fetching(owner.id, first_href="/p1", remote_status="completed")
        store.record_page(owner.id, [("e1@x.co", "deliverable", False)], next_href=None)
        store.finish(owner.id)
        assert store.settle_adopted(waiting.id) == 1
        verdicts = {e: r for e, r, _ in store.job_verdicts(b.id)}
        assert verdicts == {"e1@x.co": "deliverable"}
        planned = store.batches(b.id, BatchState.PLANNED)
        assert sorted(e for p in planned for e in store.batch_emails(p.id)) == [
            "e2@x.co",
            "e3@x.co",
        ]

        # a goes on to buy e3 first: b's batch with e3 must not be POSTed.
        store.plan(a.id, cached=[], new=["e3@x.co"], chunk_size=10)
        (a_second,) = store.batches(a.id, BatchState.PLANNED)
        assert not store.mark_submitting(a_second.id).changed
        b_e3 = next(p for p in planned if "e3@x.co" in store.batch_emails(p.id))
        claim = store.mark_submitting(b_e3.id)
        assert claim.changed and len(claim.waiting) == 1
        assert store.batch(b_e3.id).state is BatchState.PLANNED
        assert store.batch_emails(claim.waiting[0]) == ["e3@x.co"]

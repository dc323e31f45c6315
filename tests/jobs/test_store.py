"""The job store's behaviour, on both backends (`backend`, tests/jobs/conftest.py) unless a
test says why it is SQLite's alone."""

import sqlite3
from pathlib import Path

import pytest
from helpers import ManualClock
from store_backends import Backend

from ample_batch import pg
from ample_batch.errors import JobBusy
from ample_batch.jobs.locks import FileLocks, job_lock
from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import BATCH_ATTEMPTS, BatchState, job_id_for
from ample_batch.jobs.sqlite.db import MIGRATIONS
from ample_batch.jobs.sqlite.store import Store


@pytest.fixture
def store(backend: Backend):
    return backend.open(clock=ManualClock(start=1_000_000.0))


def open_job(store: JobStore, ttl: float = 86400.0):
    return store.open_job(
        input_path="/data/leads.csv",
        fingerprint="abc",
        email_column="Email",
        output_path="/data/leads.validated.csv",
        cache_ttl=ttl,
    )


def fetching(store: JobStore, batch_id: int, status: str = "error") -> int:
    """Walk a planned batch through a submission to paging its results, as the engine does."""
    store.mark_submitting(batch_id)
    store.mark_running(batch_id, remote_id=f"r{batch_id}", remote_href=f"/v/r{batch_id}")
    store.mark_fetching(batch_id, first_href=f"/v/r{batch_id}", remote_status=status)
    return batch_id


def test_same_input_same_job(store: JobStore) -> None:
    first = open_job(store)
    again = open_job(store)
    assert first.id == again.id
    edited = store.open_job(
        input_path="/data/leads.csv",
        fingerprint="changed",
        email_column="Email",
        output_path=None,
        cache_ttl=0,
    )
    assert edited.id != first.id
    assert store.get_job(first.id[:4]) is not None or len(store.jobs()) == 2


def test_a_sheet_is_another_job_on_either_backend(store: JobStore) -> None:
    default, first, second = (
        store.open_job(
            input_path="/data/book.xlsx",
            fingerprint="abc",
            email_column="Email",
            output_path=None,
            cache_ttl=0,
            sheet=sheet,
        )
        for sheet in (None, "Leads", "Leads 2")
    )
    # A workbook's sheets are inputs of their own; the default sheet (no `sheet`) keeps the
    # id its jobs had before: SQLite's of path, content and column, the shared store's of
    # content and column.
    assert len({default.id, first.id, second.id}) == 3
    assert default.id in (
        job_id_for("/data/book.xlsx", "abc", "Email"),
        pg.content_job_id("abc", "Email"),
    )


def test_batch_walks_the_state_machine(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=["a@x.co", "b@x.co", "c@x.co"], chunk_size=2)
    planned = store.batches(job.id, BatchState.PLANNED)
    assert [b.size for b in planned] == [2, 1]
    batch = planned[0]
    store.mark_submitting(batch.id)
    store.mark_running(batch.id, remote_id="r1", remote_href="/email-validations/r1")
    store.mark_fetching(batch.id, first_href="/email-validations/r1", remote_status="completed")
    store.record_page(batch.id, [("a@x.co", "deliverable", True)], next_href="/next")
    assert store.batch(batch.id).next_href == "/next"
    store.record_page(batch.id, [("b@x.co", "risky", None)], next_href=None)
    store.finish(batch.id)
    assert store.batch(batch.id).state is BatchState.DONE
    assert sorted(store.job_verdicts(job.id)) == [
        ("a@x.co", "deliverable", True),
        ("b@x.co", "risky", None),
    ]
    progress = store.progress(job.id)
    assert (progress.emails, progress.resolved, progress.pending) == (3, 2, 1)


def test_replanning_keeps_submitted_batches(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=["a@x.co", "b@x.co", "c@x.co"], chunk_size=1)
    first = store.batches(job.id)[0]
    store.mark_submitting(first.id)
    assert store.batched_emails(job.id) == ["a@x.co"]
    store.plan(job.id, cached=[], new=["b@x.co", "c@x.co"], chunk_size=5)
    sizes = sorted((b.state, b.size) for b in store.batches(job.id))
    assert sizes == [(BatchState.PLANNED, 2), (BatchState.SUBMITTING, 1)]


def test_cache_hits_become_a_done_batch(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[("a@x.co", "unknown", False)], new=["b@x.co"], chunk_size=5)
    assert store.progress(job.id).cached == 1
    assert ("a@x.co", "unknown", False) in list(store.job_verdicts(job.id))


def test_fresh_verdicts_respect_the_cutoff(backend: Backend) -> None:
    clock = ManualClock(start=1_000_000.0)
    with backend.open(clock=clock) as store:
        job = open_job(store)
        store.plan(job.id, cached=[], new=["a@x.co"], chunk_size=5)
        batch = store.batches(job.id)[0]
        store.record_page(batch.id, [("a@x.co", "deliverable", False)], next_href=None)
        assert [v[0] for v in store.fresh_verdicts(clock.now - 10)] == ["a@x.co"]
        assert list(store.fresh_verdicts(clock.now + 10)) == []
        clock.now += 100
        never = store.open_job(
            input_path="/other", fingerprint="f", email_column="e", output_path=None, cache_ttl=0
        )
        assert list(store.fresh_verdicts(never.cache_cutoff)) == []


def test_error_batches_retry_then_fail(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=["a@x.co", "b@x.co"], chunk_size=5)
    batch_id = store.batches(job.id)[0].id
    store.record_page(fetching(store, batch_id), [("a@x.co", "deliverable", False)], next_href=None)
    for attempt in range(1, BATCH_ATTEMPTS):
        new_id = store.retry_unresolved(batch_id, error="boom")
        assert new_id is not None
        assert store.batch(new_id).attempt == attempt + 1
        assert store.batch_emails(new_id) == ["b@x.co"]
        batch_id = fetching(store, new_id)
    assert store.retry_unresolved(batch_id, error="boom") is None
    assert store.batch(batch_id).state is BatchState.FAILED
    assert ("b@x.co", "failed", None) in list(store.job_verdicts(job.id))
    assert store.progress(job.id).failed == 1


def test_released_emails_can_be_planned_again(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=["a@x.co", "b@x.co"], chunk_size=5)
    batch_id = store.batches(job.id)[0].id
    store.record_page(fetching(store, batch_id), [("a@x.co", "deliverable", False)], next_href=None)
    assert store.release_unresolved(batch_id, error="canceled") == 1
    # Given back into a first-attempt planned batch: the next plan re-cuts it as new emails.
    assert store.batched_emails(job.id) == ["a@x.co"]
    (given_back,) = store.batches(job.id, BatchState.PLANNED)
    assert (given_back.attempt, given_back.size) == (1, 1)
    assert store.batch_emails(given_back.id) == ["b@x.co"]
    assert store.batch(batch_id).size == 1


def test_emails_given_back_by_a_cancel_count_as_pending(store: JobStore) -> None:
    # status after `cancel` once showed the canceled emails nowhere: 2 emails, 1 done, 0 pending.
    job = open_job(store)
    emails = [f"u{i}@x.co" for i in range(5)]
    store.plan(job.id, cached=[], new=emails, chunk_size=5)
    batch_id = fetching(store, store.batches(job.id)[0].id, status="canceled")
    store.record_page(batch_id, [("u0@x.co", "deliverable", False)], next_href=None)
    store.release_unresolved(batch_id, error="canceled")
    progress = store.progress(job.id)
    assert (progress.emails, progress.resolved, progress.failed, progress.pending) == (5, 1, 0, 4)
    assert progress.batches == {"done": 1, "planned": 1}
    # Planned again, the same emails stay counted once.
    store.plan(job.id, cached=[], new=emails[1:], chunk_size=2)
    again = store.progress(job.id)
    assert (again.emails, again.pending) == (5, 4)
    assert again.batches == {"done": 1, "planned": 2}


def test_an_older_database_still_opens(tmp_path: Path) -> None:
    # SQLite's migrations; PostgreSQL's are tests/test_pg_migrations.py.
    db = sqlite3.connect(tmp_path / "ample-batch.sqlite")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO jobs (id, input_path, fingerprint, email_column, created_at, updated_at,"
        " cache_cutoff) VALUES ('j1', '/in.csv', 'f', 'Email', 1, 1, 0)"
    )
    db.commit()
    db.close()
    with Store(tmp_path) as store:
        assert store.schema_version == len(MIGRATIONS) >= 2
        job = store.get_job("j1")
        assert job is not None and job.possible_double_charges == 0
        store.note_possible_double_charges("j1", 7)
        assert store.get_job("j1").possible_double_charges == 7


def test_job_lock_is_exclusive(tmp_path: Path) -> None:
    # File locks in the state dir: the SQLite backend's (PostgreSQL's are advisory locks).
    locks = FileLocks(tmp_path)
    with job_lock(locks, "j1"):
        second = job_lock(locks, "j1")
        with pytest.raises(JobBusy, match="already running"):
            second.__enter__()
    with job_lock(locks, "j1"):
        pass


def test_split_keeps_the_attempt_and_every_email(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=[f"u{i}@x.co" for i in range(10)], chunk_size=10)
    batch_id = fetching(store, store.batches(job.id)[0].id)
    new_id = store.retry_unresolved(batch_id, error="boom")
    assert new_id is not None
    store.split(new_id, 4)
    planned = store.batches(job.id, BatchState.PLANNED)
    assert sorted(b.size for b in planned) == [2, 4, 4]
    assert {b.attempt for b in planned} == {2}
    emails = [e for b in planned for e in store.batch_emails(b.id)]
    assert sorted(emails) == sorted(f"u{i}@x.co" for i in range(10))


def test_a_validations_errors_survive_a_restart(store: JobStore) -> None:
    job = open_job(store)
    store.plan(job.id, cached=[], new=["a@x.co"], chunk_size=5)
    batch_id = store.batches(job.id)[0].id
    errors = [{"code": "insufficient_credits", "detail": "out"}]
    store.mark_submitting(batch_id)
    store.mark_running(batch_id, remote_id="r1", remote_href="/v/1")
    store.mark_fetching(batch_id, first_href="/v/1", remote_status="error", errors=errors)
    assert store.remote_errors(batch_id) == errors


def test_the_cache_check_time_is_indexed(tmp_path: Path) -> None:
    # SQLite's query planner; the PostgreSQL index is migration 1's (test_pg_migrations).
    store = Store(tmp_path)
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT email FROM verdicts WHERE checked_at >= 0"
    ).fetchall()
    assert any("verdicts_checked_at" in str(tuple(row)) for row in plan)
    store.close()


def _cache(store: JobStore, clock: ManualClock, email: str, age_days: float) -> None:
    now = clock.now
    clock.now = now - age_days * 86400
    job = store.open_job(
        input_path=f"/seed/{email}", fingerprint="f", email_column="e", output_path=None,
        cache_ttl=86400.0,
    )  # fmt: skip
    store.plan(job.id, cached=[], new=[email], chunk_size=5)
    store.record_page(store.batches(job.id)[0].id, [(email, "risky", False)], next_href=None)
    store.update_job(job.id, state="done", stats={})
    clock.now = now


def test_the_cache_is_pruned_of_verdicts_no_ttl_in_use_can_reach(backend: Backend) -> None:
    clock = ManualClock(start=1_000_000.0)
    with backend.open("a", clock=clock) as store:
        for email, age in (("old@x.co", 100), ("month@x.co", 40), ("new@x.co", 1)):
            _cache(store, clock, email, age)
        # This run's TTL is 0 (never reuse): the default 30 days are still kept for others.
        assert store.prune_verdicts(0) == 2
        assert {v[0] for v in store.fresh_verdicts(float("-inf"))} == {"new@x.co"}
    with backend.open("b", clock=clock) as store:
        # A stored job that reuses 60-day-old verdicts keeps the 40-day-old one.
        store.open_job(
            input_path="/long", fingerprint="f", email_column="e", output_path=None,
            cache_ttl=60 * 86400.0,
        )  # fmt: skip
        for email, age in (("old@x.co", 100), ("month@x.co", 40), ("new@x.co", 1)):
            _cache(store, clock, email, age)
        assert store.prune_verdicts(30 * 86400.0) == 1
        assert {v[0] for v in store.fresh_verdicts(float("-inf"))} == {"month@x.co", "new@x.co"}


def test_estimate_streams_the_cache(tmp_path: Path) -> None:
    # The pipeline's SQLite state dir; the state URL's wiring is tested with the CLI's.
    # A big cache for other lists must not be loaded whole to price a small file.
    import tracemalloc

    from helpers import lead_rows, write_leads

    from ample_batch.options import ValidateOptions
    from ample_batch.pipeline.estimate import estimate

    state = tmp_path / "state"
    with Store(state) as store:
        now = store._clock()
        with store._transaction() as db:
            db.executemany(
                "INSERT INTO verdicts VALUES (?, 'deliverable', 0, ?)",
                ((f"other{i:07d}@elsewhere.com", now) for i in range(300_000)),
            )
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    options = ValidateOptions(input=src, state_dir=state)
    estimate(options)  # warm up imports and caches
    tracemalloc.start()
    try:
        result = estimate(options)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.credits_needed == 50
    # Loaded whole, the cache's 300,000 verdicts peaked over 60 MB; streamed, under 20 MB.
    assert peak < 30_000_000, peak


def test_a_job_prefix_is_text_not_a_pattern(store: JobStore) -> None:
    job = open_job(store)
    assert store.get_job(job.id[:3].upper()) == store.get_job(job.id[:3]) is not None
    assert store.get_job("_") is None and store.get_job("%") is None
    assert store.get_job(job.id[:2] + "_") is None

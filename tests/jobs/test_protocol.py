"""The job store's seam: the SQLite store is a JobStore member for member, its batches move
only as `records.MOVES` allows, and nothing outside the SQLite implementation touches SQLite."""

from __future__ import annotations

import ast
import inspect
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import ROOT

from ample_batch.errors import StateFailed
from ample_batch.jobs.db import DB_NAME
from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import MOVES, BatchState
from ample_batch.jobs.store import Store

if TYPE_CHECKING:
    # mypy checks the members' types here (and in backend.open_store, which `mypy
    # ample_batch` covers); the tests below check the same at run time.
    _conforms: JobStore = Store(Path())


def _members() -> list[str]:
    """The protocol's methods and attributes, as typing would list them."""
    names = {name for name in JobStore.__dict__ if not name.startswith("_")}
    names |= set(JobStore.__annotations__)
    return sorted(names | {"__enter__", "__exit__"})


def test_the_sqlite_store_has_every_protocol_member_with_its_signature(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert isinstance(store.state_dir, Path)
    wrong = []
    for name in _members():
        wanted = getattr(JobStore, name, None)
        if not callable(wanted):
            continue
        got = getattr(Store, name, None)
        if got is None or inspect.signature(got) != inspect.signature(wanted):
            wrong.append(f"{name}: {inspect.signature(wanted)} vs {got and inspect.signature(got)}")
    assert wrong == []
    # Guards the loop above against a protocol that lists nothing.
    assert {"mark_submitting", "plan", "job_verdicts", "state_dir"} <= set(_members())


def test_the_protocol_lists_what_the_callers_call() -> None:
    """Every `store.x` the engine, the followers and the pipeline use is in the protocol,
    and the protocol has nothing they do not use."""
    used = set()
    callers = [ROOT / "ample_batch/jobs" / f"{m}.py" for m in ("engine", "follow", "inflight")]
    callers += sorted((ROOT / "ample_batch/pipeline").glob("*.py"))
    for path in callers:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute | ast.Name):
                owner = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
                if owner == "store":
                    used.add(node.attr)
    assert used - set(_members()) == set()
    assert set(_members()) - used - {"__enter__", "__exit__", "close"} == set()


def _stage_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


SQLITE_IMPLEMENTATION = {"db", "store", "store_jobs", "store_outcomes", "store_plan", "adoption"}
"""The jobs/ modules that are the SQLite store; jobs/state_dir.py reads the quota ledgers."""


def test_only_the_sqlite_store_touches_sqlite() -> None:
    callers = [ROOT / "ample_batch/jobs" / f"{m}.py" for m in ("engine", "follow", "inflight")]
    callers += sorted((ROOT / "ample_batch/pipeline").glob("*.py"))
    wrong = []
    for path in callers:
        imported = _stage_imports(path)
        if "sqlite3" in imported:
            wrong.append(f"{path.name} imports sqlite3")
        for module in SQLITE_IMPLEMENTATION - {"db"}:
            if {f".{module}", f"..jobs.{module}"} & imported:
                wrong.append(f"{path.name} imports the SQLite store ({module})")
    assert wrong == []


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path) as s:
        yield s


def _batch_in(store: Store, state: BatchState) -> int:
    job = store.open_job(
        input_path="/data/leads.csv", fingerprint="f", email_column="Email",
        output_path=None, cache_ttl=0,
    )  # fmt: skip
    store.plan(job.id, cached=[], new=[f"{state}@x.co"], chunk_size=5)
    batch_id = store.batches(job.id, BatchState.PLANNED)[-1].id
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE batches SET state = ? WHERE id = ?", (state, batch_id))
    db.close()
    return batch_id


@pytest.mark.parametrize("source", list(BatchState))
def test_each_state_moves_only_as_the_table_allows(store: Store, source: BatchState) -> None:
    for target in BatchState:
        batch_id = _batch_in(store, source)
        if target in MOVES[source]:
            store._move(batch_id, target)
            assert store.batch(batch_id).state is target
        else:
            with pytest.raises(StateFailed, match=f"from {source} to {target}"):
                store._move(batch_id, target, error="never written")
            assert store.batch(batch_id).state is source
            assert store.batch(batch_id).error is None


def test_a_finished_batch_is_never_planned_again(store: Store) -> None:
    batch_id = _batch_in(store, BatchState.DONE)
    with pytest.raises(StateFailed, match="cannot move from done to planned"):
        store.back_to_planned(batch_id, error="a late refusal")
    # Nor is a batch failed before it was sent: its emails were never tried.
    planned = _batch_in(store, BatchState.PLANNED)
    with pytest.raises(StateFailed, match="from planned to failed"):
        store.fail(planned, error="gave up")
    assert store.batch(planned).state is BatchState.PLANNED


def test_a_retry_of_a_batch_mid_post_is_refused_whole(store: Store) -> None:
    """A move that goes with other writes is refused with them: no retry batch is left."""
    submitting = _batch_in(store, BatchState.SUBMITTING)
    job_id = store.batch(submitting).job_id
    with pytest.raises(StateFailed, match="from submitting to done"):
        store.retry_unresolved(submitting, error="boom")
    assert [b.id for b in store.batches(job_id)] == [submitting]
    assert store.batch_emails(submitting) == ["submitting@x.co"]


def test_reads_raise_our_errors_not_sqlite3s(store: Store) -> None:
    """A store method that reads raises errors.State*, never sqlite3.Error: callers
    (`prune_cache`, `status`) need to know no backend's exceptions."""
    batch_id = _batch_in(store, BatchState.PLANNED)
    other = sqlite3.connect(store.state_dir / DB_NAME)
    other.execute("DROP TABLE verdicts")
    other.execute("ALTER TABLE batches RENAME TO gone")
    other.close()
    with pytest.raises(StateFailed, match=DB_NAME):
        store.batch(batch_id)
    with pytest.raises(StateFailed, match=DB_NAME):
        list(store.fresh_verdicts(0.0))
    with pytest.raises(StateFailed, match=DB_NAME):
        store.prune_verdicts(0.0)

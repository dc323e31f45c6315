"""The job store's seam: both stores are JobStores member for member, their batches move only
as `records.MOVES` allows, and nothing outside the SQLite implementation touches SQLite."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import ROOT
from store_backends import Backend

from ample_batch.errors import StateFailed
from ample_batch.jobs.postgres.store import PgStore
from ample_batch.jobs.protocol import JobStore
from ample_batch.jobs.records import MOVES, BatchState
from ample_batch.jobs.sqlite.db import DB_NAME
from ample_batch.jobs.sqlite.store import Store

if TYPE_CHECKING:
    # mypy checks the members' types here (and in backend.open_store, which `mypy
    # ample_batch` covers); the tests below check the same at run time.
    _conforms: JobStore = Store(Path())


def _members() -> list[str]:
    """The protocol's methods and attributes, as typing would list them."""
    names = {name for name in JobStore.__dict__ if not name.startswith("_")}
    names |= set(JobStore.__annotations__)
    return sorted(names | {"__enter__", "__exit__"})


@pytest.mark.parametrize("implementation", [Store, PgStore])
def test_each_store_has_every_protocol_member_with_its_signature(
    implementation: type, tmp_path: Path
) -> None:
    if implementation is Store:
        with Store(tmp_path) as store:
            assert isinstance(store.state_dir, Path)
    else:
        # No state dir: nothing is written under --state-dir with a state URL.
        assert PgStore.state_dir is None
    wrong = []
    for name in _members():
        wanted = getattr(JobStore, name, None)
        if not callable(wanted):
            continue
        got = getattr(implementation, name, None)
        if got is None or inspect.signature(got) != inspect.signature(wanted):
            wrong.append(f"{name}: {inspect.signature(wanted)} vs {got and inspect.signature(got)}")
    assert wrong == []
    # Guards the loop above against a protocol that lists nothing.
    assert {"mark_submitting", "plan", "job_verdicts"} <= set(_members())
    # Where the job locks live is the backend's business (backend.job_locks), not the callers'.
    assert "state_dir" not in _members()


def test_the_protocol_lists_what_the_callers_call() -> None:
    """Every `store.x` the engine, the followers and the pipeline use is in the protocol,
    and the protocol has nothing they do not use."""
    used = set()
    callers = [
        ROOT / "ample_batch/jobs" / f"{m}.py" for m in ("engine", "submit", "follow", "inflight")
    ]
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
    """The modules `path` imports, relative ones made absolute."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            parent = ".".join(base) if node.level else ""
            found.add(".".join(part for part in (parent, node.module or "") if part))
    return found


SQLITE_IMPLEMENTATION = "ample_batch.jobs.sqlite"
POSTGRES_IMPLEMENTATION = "ample_batch.jobs.postgres"
"""The packages that are the two stores; only `backend` opens them for the callers."""


def test_only_the_sqlite_store_touches_sqlite() -> None:
    callers = [
        ROOT / "ample_batch/jobs" / f"{m}.py" for m in ("engine", "submit", "follow", "inflight")
    ]
    callers += sorted((ROOT / "ample_batch/pipeline").glob("*.py"))
    wrong = []
    for path in callers:
        imported = _stage_imports(path)
        if "sqlite3" in imported:
            wrong.append(f"{path.name} imports sqlite3")
        for module in imported:
            if module.startswith(SQLITE_IMPLEMENTATION) and module != f"{SQLITE_IMPLEMENTATION}.db":
                wrong.append(f"{path.name} imports the SQLite store ({module})")
            if module.startswith(POSTGRES_IMPLEMENTATION) and module != (
                f"{POSTGRES_IMPLEMENTATION}.locks"  # the cancel watcher asks a lost lock
            ):
                wrong.append(f"{path.name} imports the PostgreSQL store ({module})")
        if "psycopg" in imported:
            wrong.append(f"{path.name} imports psycopg")
    assert wrong == []
    assert "ample_batch.jobs.protocol" in _stage_imports(ROOT / "ample_batch/jobs/engine.py")


@pytest.fixture
def store(backend: Backend):
    return backend.open()


@pytest.fixture
def force_state(backend: Backend):
    """Put a batch in a state from another connection, as no store method would."""

    def force(batch_id: int, state: BatchState) -> None:
        backend.execute("UPDATE batches SET state = ? WHERE id = ?", (state.value, batch_id))

    return force


def _batch_in(store: JobStore, state: BatchState, force) -> int:
    job = store.open_job(
        input_path="/data/leads.csv", fingerprint="f", email_column="Email",
        output_path=None, cache_ttl=0,
    )  # fmt: skip
    store.plan(job.id, cached=[], new=[f"{state}@x.co"], chunk_size=5)
    batch_id = store.batches(job.id, BatchState.PLANNED)[-1].id
    force(batch_id, state)
    return batch_id


@pytest.mark.parametrize("source", list(BatchState))
def test_each_state_moves_only_as_the_table_allows(
    store: JobStore, force_state, source: BatchState
) -> None:
    for target in BatchState:
        batch_id = _batch_in(store, source, force_state)
        if target in MOVES[source]:
            store._move(batch_id, target)
            assert store.batch(batch_id).state is target
        else:
            with pytest.raises(StateFailed, match=f"from {source} to {target}"):
                store._move(batch_id, target, error="never written")
            assert store.batch(batch_id).state is source
            assert store.batch(batch_id).error is None


def test_a_finished_batch_is_never_planned_again(store: JobStore, force_state) -> None:
    batch_id = _batch_in(store, BatchState.DONE, force_state)
    with pytest.raises(StateFailed, match="cannot move from done to planned"):
        store.back_to_planned(batch_id, error="a late refusal")
    # Nor is a batch failed before it was sent: its emails were never tried.
    planned = _batch_in(store, BatchState.PLANNED, force_state)
    with pytest.raises(StateFailed, match="from planned to failed"):
        store.fail(planned, error="gave up")
    assert store.batch(planned).state is BatchState.PLANNED


def test_a_retry_of_a_batch_mid_post_is_refused_whole(store: JobStore, force_state) -> None:
    """A move that goes with other writes is refused with them: no retry batch is left."""
    submitting = _batch_in(store, BatchState.SUBMITTING, force_state)
    job_id = store.batch(submitting).job_id
    with pytest.raises(StateFailed, match="from submitting to done"):
        store.retry_unresolved(submitting, error="boom")
    assert [b.id for b in store.batches(job_id)] == [submitting]
    assert store.batch_emails(submitting) == ["submitting@x.co"]


def test_reads_raise_our_errors_not_the_drivers(
    store: JobStore, force_state, backend: Backend
) -> None:
    """A store method that reads raises errors.State*, never sqlite3's or psycopg's:
    callers (`prune_cache`, `status`) need to know no backend's exceptions."""
    batch_id = _batch_in(store, BatchState.PLANNED, force_state)
    backend.execute("DROP TABLE verdicts")
    backend.execute("ALTER TABLE batches RENAME TO gone")
    # The message names the state: the database file, or the URL without its password.
    where = DB_NAME if backend.name == "sqlite" else "127.0.0.1"
    with pytest.raises(StateFailed, match=where) as caught:
        store.batch(batch_id)
    with pytest.raises(StateFailed, match=where):
        list(store.fresh_verdicts(0.0))
    with pytest.raises(StateFailed, match=where):
        store.prune_verdicts(0.0)
    if backend.url is not None:
        password = backend.url.split(":")[2].split("@")[0]
        assert password not in str(caught.value)

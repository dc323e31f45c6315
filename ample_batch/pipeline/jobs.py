"""The commands around the main job: `status` and `cancel`.

    [s.job.id for s in status("state")]    # status(): AMPLE_BATCH_HOME, else the platform's
    status(simulate=True)                  # the jobs of simulate=True runs
    cancel("3f9a", state_url="postgresql://ample@db/leads")

`status` and `cancel` are the Python API (keywords, Python's words in errors);
`job_statuses` and `cancel_job` are the same for the command line, on a ready `State`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Unpack

from ..errors import AmpleBatchError, InputError, JobBusy, Stopped
from ..jobs.backend import (
    State,
    Where,
    as_state,
    find_job,
    has_store,
    job_locks,
    open_store,
)
from ..jobs.locks import Holder, JobLocks, job_lock
from ..jobs.records import BatchState, Job, Progress
from ..options import ApiOptions
from .job_states import CANCELED, DONE, shown_state
from .keywords import (
    API_KEYWORDS,
    CANCEL_KEYWORDS,
    STATUS_KEYWORDS,
    CancelKeywords,
    PathLike,
    StatusKeywords,
    api_options,
    check_keywords,
    state_for,
)
from .wording import python_words


@dataclass(frozen=True)
class JobStatus:
    """One job and how far it got; `pid` (on `host`) is the live run holding it, if any."""

    job: Job
    progress: Progress
    state_dir: Path | None = None
    pid: int | None = None
    eta: float | None = None
    """When a live run could be done (epoch seconds), at its quota's pace."""
    host: str | None = None
    """The host of the live run, if any (with shared state, maybe another machine's)."""

    def as_dict(self) -> dict[str, Any]:
        job = asdict(self.job)
        job.pop("stats", None)
        progress = asdict(self.progress)
        progress["pending"] = self.progress.pending
        return {
            "job": job,
            "progress": progress,
            "state_dir": str(self.state_dir) if self.state_dir else None,
            "pid": self.pid,
            "host": self.host,
            "eta": self.eta,
        }


def state_location(state_dir: Path, url: str | None, schema: str = "ample_batch") -> State:
    """The shared state at `url` (checked: a PostgreSQL URL, a plain schema name), with
    `state_dir` kept only for what is never shared; without a `url`, the state dir's.

    >>> state_location(Path("/s"), "postgres://db/leads").where()
    'postgres://db/leads (schema ample_batch)'
    """
    if url is None:
        return State(state_dir)
    from .. import pg

    return State(state_dir, url=pg.check_url(url), schema=pg.check_schema(schema))


def status(
    state_dir: PathLike | State | None = None,
    job: str | None = None,
    **where: Unpack[StatusKeywords],
) -> list[JobStatus]:
    """The jobs in the state dir or database (or the one whose id starts with `job`), the
    most recently updated first.

    The state as the command line finds it: `state_dir` (a str or Path; AMPLE_BATCH_HOME,
    else the platform's data dir), `state_url=` (AMPLE_BATCH_STATE_URL) and `state_schema=`;
    `simulate=True` lists the jobs of simulated runs instead. A job a live process holds
    shows as `running`, with that process, its host and an ETA; one whose last run died
    without recording its end, as `stopped` (job_states.py).

        [(s.job.id, s.progress.pending) for s in status("state")]
    """
    with python_words():
        check_keywords("status", where, STATUS_KEYWORDS)
        state = state_for({**where, "state_dir": state_dir})
        return job_statuses(state.for_mode(_simulate(where)), job)


def job_statuses(state_dir: Where, job: str | None = None) -> list[JobStatus]:
    """`status` of a ready state (the mode's own), as the command line asks it: messages in
    its words."""
    state = as_state(state_dir)
    if not has_store(state):
        if job:
            raise InputError(f"no job {job!r}: the state {state.where()} holds no jobs")
        return []
    with open_store(state) as store, contextlib.closing(job_locks(state)) as locks:
        jobs = store.jobs() if job is None else [find_job(store, job)]
        return [_status(state, locks, j, store.progress(j.id)) for j in jobs]


def _status(state: State, locks: JobLocks, job: Job, progress: Progress) -> JobStatus:
    found = locks.holder(job.id)
    where = None if state.shared else state.dir
    shown = replace(job, state=shown_state(job.state, held=found is not None))
    if found is None:
        return JobStatus(shown, progress, where)
    run = job.stats.get("run") or {}
    pace = run.get("emails_per_second") or 0
    eta = time.time() + progress.pending / pace if pace > 0 else None
    return JobStatus(shown, progress, where, found.pid or None, eta, found.host)


def simulated_jobs(state: State) -> int:
    """How many jobs simulated runs keep beside `state`, for a hint where it has none; 0
    when its schema is too long to have a simulated twin (no error of a look without one)."""
    try:
        trial = state.for_mode(True)
        if not has_store(trial):
            return 0
    except InputError:
        return 0
    with open_store(trial) as store:
        return len(store.jobs())


def _simulate(keywords: StatusKeywords) -> bool:
    value = keywords.get("simulate", False)
    if not isinstance(value, bool):
        raise TypeError(f"simulate must be True or False, not {type(value).__name__}")
    return value


CANCEL_WAIT = 300.0
"""How long `cancel` waits for a live run to cancel its validations and exit."""


def cancel(
    job: str,
    /,
    *,
    api: ApiOptions | None = None,
    wait: float = CANCEL_WAIT,
    **options: Unpack[CancelKeywords],
) -> int:
    """Cancel the running validations of the job whose id starts with `job`, keeping their
    partial results; returns how many were canceled.

    The state as `status` finds it (`state_dir`, `state_url`, `state_schema`, `simulate`);
    the API as `validate` reaches it (`api_key` or AMPLEMARKET_API_KEY, `base_url`, and the
    key's `usage_limit` and `rate_limit`, whose ledgers it shares), or one ApiOptions as
    `api=`. A live run holding the job is asked to stop and waited for, up to `wait` seconds.

        cancel("3f9a", state_dir="state")
    """
    with python_words():
        check_keywords("cancel", options, CANCEL_KEYWORDS)
        given = [name for name in options if name in API_KEYWORDS - {"simulate"}]
        if api is not None and given:
            raise TypeError(f"cancel() takes api= or API keywords, not both: got {given[0]!r}")
        if api is None:
            api = api_options(options)
        elif _simulate(options):
            api = replace(api, simulate=True)
        return cancel_job(state_for(options), job, api, wait=wait)


def cancel_job(state_dir: Where, job: str, api: ApiOptions, *, wait: float = CANCEL_WAIT) -> int:
    """`cancel` of a ready state (`api.simulate` picks the mode's), as the command line asks
    it: messages in its words.

    A job a live run holds is stopped: that run is asked (a cancel request naming it, and
    SIGTERM when it runs on this host) to cancel its validations, write its partial output
    and exit 75; this waits for it. With shared state the run may be on another host (or in
    another container with the same host name): it is never signalled, and sees the request
    in the database within seconds. The canceled remainder goes back to the plan: running
    `validate` again submits it. Returns how many validations were canceled.
    """
    return asyncio.run(_cancel(state_dir, job, api, wait))


async def _cancel(state_dir: Where, job_ref: str, api: ApiOptions, wait: float) -> int:
    state = as_state(state_dir).for_mode(api.simulate)
    with open_store(state) as store:
        job = find_job(store, job_ref)
        running = len(store.batches(job.id, BatchState.RUNNING))
    with contextlib.closing(job_locks(state)) as locks:
        return await _cancel_with(state, locks, job, running, api, wait)


async def _cancel_with(
    state: State, locks: JobLocks, job: Job, running: int, api: ApiOptions, wait: float
) -> int:
    # Imported here: `status` shares this module and must not load aiohttp or pyarrow.
    from ..api.client import ValidationClient
    from .session import api_session, scheduler_for
    from .steps import cancel_validations

    found = locks.holder(job.id)
    if found is not None and found.following:
        raise JobBusy(
            f"job {job.id}'s open batches are being followed by {found.describe()} for "
            "another job on the same key (its run is gone); run cancel again once that finishes"
        )
    if found is not None and await _stop_live_run(locks, job.id, found, wait, state.shared):
        return running
    with open_store(state) as store, job_lock(locks, job.id):
        async with api_session(api) as (session, base_url, api_key):
            scheduler = scheduler_for(api, state, api_key)
            try:
                client = ValidationClient(
                    session, base_url=base_url, api_key=api_key, throttle=scheduler
                )
                running = await cancel_validations(
                    store, job.id, client, scheduler, locks, simulate=api.simulate
                )
            finally:
                scheduler.close()
        # Read again under the lock: a run may have finished (and written its stats) since.
        now = store.get_job(job.id) or job
        if now.state != DONE or running:  # a finished job stays done: nothing was canceled
            store.update_job(job.id, state=CANCELED, stats=now.stats)
    return running


async def _stop_live_run(
    locks: JobLocks, job_id: str, found: Holder, wait: float, shared: bool
) -> bool:
    """Ask the live run holding the job to cancel, and wait for it to exit. False if the
    run ended by itself before it could be asked (the caller cancels then).

    With shared state the run is never signalled: containers share host names but not PID
    namespaces, so a pid "here" may be another process altogether; the run sees the
    request in the database within `CANCEL_POLL_SECONDS`."""
    signalled = found.here and not shared
    if signalled and not found.pid:
        return False
    locks.request_cancel(job_id, found)
    if signalled:
        try:
            os.kill(found.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
    deadline = time.monotonic() + wait
    while locks.holder(job_id) is not None:
        if time.monotonic() >= deadline:
            raise Stopped(
                f"asked {found.describe()} to cancel job {job_id}; it is still finishing "
                "its validations: see `ample-batch status`"
            )
        await asyncio.sleep(0.1)
    return True


CANCEL_POLL_SECONDS = 1.0
"""How often a run on shared state looks for a cancel request from any host."""


async def watch_for_cancel(locks: JobLocks, job_id: str, stop: asyncio.Event) -> None:
    """The run's side of `cancel` on shared state, where `cancel` may run on another host and
    cannot signal this process: set `stop` (as SIGTERM would) once a cancel is asked, or once
    the job lock is lost for good (its connection dropped and another host took the job).

    The looks run in a thread: a database cut off without a word must not freeze the loop
    (Ctrl-C, --max-runtime) until TCP gives up."""
    while not stop.is_set():
        if await asyncio.to_thread(_should_stop, locks, job_id):
            stop.set()
            return
        await asyncio.sleep(CANCEL_POLL_SECONDS)


def _should_stop(locks: JobLocks, job_id: str) -> bool:
    """Whether the run must stop: its job lock lost for good, or a cancel asked."""
    from ..jobs.postgres.locks import PgLocks

    if isinstance(locks, PgLocks) and not locks.still_held(job_id):
        return True
    # The database away for a moment: the store's own calls say so, not this look.
    with contextlib.suppress(AmpleBatchError):
        return locks.cancel_requested(job_id)
    return False

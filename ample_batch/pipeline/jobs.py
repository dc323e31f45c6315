"""The commands around the main job: `estimate`, `status` and `cancel`.

estimate(ValidateOptions(input=Path("leads.csv"), state_dir=d)).credits_needed
[s.job.id for s in status(d)]
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import InputError, JobBusy, Stopped
from ..jobs.backend import has_store, open_store
from ..jobs.locks import following, holder, job_lock, request_cancel
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job, Progress
from ..options import ApiOptions, state_dir_for


@dataclass(frozen=True)
class JobStatus:
    """One job and how far it got; `pid` is the live run holding it, if any."""

    job: Job
    progress: Progress
    state_dir: Path | None = None
    pid: int | None = None
    eta: float | None = None
    """When a live run could be done (epoch seconds), at its quota's pace."""

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
            "eta": self.eta,
        }


def status(state_dir: Path, job: str | None = None) -> list[JobStatus]:
    """The jobs in the state dir (or the one whose id starts with `job`).

    A job a live process holds shows as `running`, with that process and an ETA.
    """
    if not has_store(state_dir):
        if job:
            raise InputError(f"no job {job!r}: the state dir {state_dir} holds no jobs")
        return []
    with open_store(state_dir) as store:
        jobs = store.jobs() if job is None else [_find(store, job)]
        return [_status(state_dir, j, store.progress(j.id)) for j in jobs]


def _status(state_dir: Path, job: Job, progress: Progress) -> JobStatus:
    pid = holder(state_dir, job.id)
    if pid is None:
        return JobStatus(job, progress, state_dir)
    run = job.stats.get("run") or {}
    pace = run.get("emails_per_second") or 0
    eta = time.time() + progress.pending / pace if pace > 0 else None
    return JobStatus(replace(job, state="running"), progress, state_dir, pid or None, eta)


def _find(store: JobStore, job: str) -> Job:
    found = store.get_job(job)
    if found is None:
        raise InputError(f"no job {job!r} (or more than one starts so): see `ample-batch status`")
    return found


CANCEL_WAIT = 300.0
"""How long `cancel` waits for a live run to cancel its validations and exit."""


def cancel(state_dir: Path, job: str, api: ApiOptions, *, wait: float = CANCEL_WAIT) -> int:
    """Cancel the job's running validations and keep their partial results.

    A job a live run holds is stopped: that run is asked (SIGTERM, with a cancel request
    naming it) to cancel its validations, write its partial output and exit 75; this waits
    for it. The canceled remainder goes back to the plan: running `validate` again submits
    it. Returns how many validations were canceled.
    """
    return asyncio.run(_cancel(state_dir, job, api, wait))


async def _cancel(state_dir: Path, job_ref: str, api: ApiOptions, wait: float) -> int:
    # Imported here: `status` shares this module and must not load aiohttp or pyarrow.
    from ..api.client import ValidationClient
    from .session import api_session, scheduler_for
    from .steps import cancel_validations

    state_dir = state_dir_for(api, state_dir)
    with open_store(state_dir) as store:
        job = _find(store, job_ref)
        running = len(store.batches(job.id, BatchState.RUNNING))
    if following(state_dir, job.id):
        raise JobBusy(
            f"job {job.id}'s open batches are being followed by process "
            f"{holder(state_dir, job.id)} for another job on the same key (its run is gone); "
            "run cancel again once that finishes"
        )
    if holder(state_dir, job.id) is not None and await _stop_live_run(state_dir, job.id, wait):
        return running
    with open_store(state_dir) as store, job_lock(state_dir, job.id):
        async with api_session(api) as (session, base_url, api_key):
            scheduler = scheduler_for(api, state_dir, api_key)
            try:
                client = ValidationClient(
                    session, base_url=base_url, api_key=api_key, throttle=scheduler
                )
                running = await cancel_validations(store, job.id, client, scheduler)
            finally:
                scheduler.close()
        store.update_job(job.id, state="canceled", stats=job.stats)
    return running


async def _stop_live_run(state_dir: Path, job_id: str, wait: float) -> bool:
    """Ask the live run holding the job to cancel, and wait for it to exit. False if the
    run ended by itself before it could be asked (the caller cancels then)."""
    pid = holder(state_dir, job_id)
    if not pid:
        return False
    request_cancel(state_dir, job_id, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while holder(state_dir, job_id) is not None:
        if time.monotonic() >= deadline:
            raise Stopped(
                f"asked process {pid} to cancel job {job_id}; it is still finishing its "
                "validations: see `ample-batch status`"
            )
        await asyncio.sleep(0.1)
    return True

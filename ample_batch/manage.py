"""The commands around the main job: `estimate`, `status` and `cancel`.

estimate(ValidateOptions(input=Path("leads.csv"), state_dir=d)).credits_needed
[s.job.id for s in status(d)]
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import read
from .client import ValidationClient
from .errors import InputError, JobBusy, Stopped
from .job_steps import cancel_validations
from .locks import following, holder, job_lock, request_cancel
from .plan import chunk_size_for, plan_emails, schedule_for
from .run import ApiOptions, ValidateOptions, api_session, scheduler_for, state_dir_for
from .schema import DB_NAME, BatchState, Job, Progress, job_id_for
from .store import Store


@dataclass(frozen=True)
class Estimate:
    """A pre-flight answer: what validating the file would cost and take."""

    input: str
    email_column: str
    rows: int
    unique_emails: int
    blank: int
    invalid: int
    cached: int
    already_done: int
    credits_needed: int
    batches: int
    requests: int
    seconds_to_last_submission: float
    earliest_finish: float
    warnings: list[str] = field(default_factory=list)
    """What the user should know about how the file was read, e.g. `not UTF-8: read as cp1252`."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(options: ValidateOptions) -> Estimate:
    """What `validate` with these options would cost and take: scans the file and the cache,
    makes no API call and spends nothing."""
    spec = read.inspect_input(
        options.input,
        email_column=options.email_column,
        encoding=options.encoding,
        sheet=options.sheet,
    )
    chunk = chunk_size_for(options.chunk_size, options.api.resolved_usage_limit)
    scan = read.scan(spec)
    spec = scan.spec
    already: list[str] = []
    cutoff = time.time() - options.cache_ttl if options.cache_ttl > 0 else float("inf")
    state_dir = state_dir_for(options.api, options.state_dir)
    if (state_dir / DB_NAME).exists():
        with Store(state_dir) as store:
            job = store.get_job(
                job_id_for(str(spec.path.resolve()), read.fingerprint(spec), spec.email_column)
            )
            if job is not None:
                already = store.batched_emails(job.id)
                cutoff = job.cache_cutoff
            # Streamed: the cache may hold millions of verdicts for other lists.
            plan = plan_emails(scan.unique.to_pylist(), already, store.fresh_verdicts(cutoff))
    else:
        plan = plan_emails(scan.unique.to_pylist(), already, ())
    timing = schedule_for(
        len(plan.new),
        chunk=chunk,
        usage=options.api.resolved_usage_limit,
        rate=options.api.resolved_rate_limit,
    )
    return Estimate(
        input=str(spec.path),
        email_column=spec.email_column,
        rows=scan.rows,
        unique_emails=len(scan.unique),
        blank=scan.blank,
        invalid=scan.invalid,
        cached=len(plan.cached),
        already_done=len(already),
        credits_needed=len(plan.new),
        batches=timing.batches,
        requests=timing.requests,
        seconds_to_last_submission=timing.last_submission,
        earliest_finish=time.time() + timing.last_submission,
        warnings=list(spec.warnings),
    )


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
    if not (state_dir / "ample-batch.sqlite").exists():
        if job:
            raise InputError(f"no job {job!r}: the state dir {state_dir} holds no jobs")
        return []
    with Store(state_dir) as store:
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


def _find(store: Store, job: str) -> Job:
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
    state_dir = state_dir_for(api, state_dir)
    with Store(state_dir) as store:
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
    with Store(state_dir) as store, job_lock(state_dir, job.id):
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

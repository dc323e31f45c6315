"""Running one job once its checks have passed: scan, plan, validate, then write its output.

`validate` (the `validate` module) takes the lock, checks the key and opens the store, then hands a
`JobRun` to `run_job`, which ends by recording the job's outcome: the summary returned on a
complete run, or raised (`stopping`) on one that ended early.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..api.client import ValidationClient
from ..files.join import enrich_file
from ..files.output import check_output, partial_path
from ..files.scan import scan as scan_file
from ..files.spec import InputSpec
from ..files.split import SPLIT_VALUES, split_path
from ..jobs.backend import State, lock_lost
from ..jobs.engine import Engine
from ..jobs.follow import FollowPolicy
from ..jobs.locks import JobLocks
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job
from ..options import ValidateOptions
from ..quota.scheduler import Scheduler
from . import steps as job_steps
from .html_report import write_run_report
from .job_states import CANCELED, DONE, PARTIAL
from .jobs import watch_for_cancel
from .stopping import InsufficientCreditsStop, StoppedWithSummary, deadline_for
from .summary import LiveStatus, Reporter, Summary

__all__ = ["JobRun", "run_job"]


@dataclass(frozen=True)
class JobRun:
    """Everything one run of one job works with, once the checks have passed."""

    options: ValidateOptions
    spec: InputSpec
    output: Path
    chunk: int
    store: JobStore
    job: Job
    client: ValidationClient
    scheduler: Scheduler
    stop: asyncio.Event
    canceller: ValidationClient
    state: State
    """Where this run's state lives: `state_of` the mode, not always options.state_dir."""
    locks: JobLocks
    """The state's job locks: this run holds its job's."""
    identity_stats: dict[str, Any]
    """The input's identity, kept in the job's stats for the next run's cheap re-entry."""


async def run_job(run: JobRun, live: LiveStatus, reporter: Reporter, started: float) -> Summary:
    """Take `run`'s job as far as it goes now, write its output and record how it ended.

    Returns the summary of a complete job; raises `InsufficientCreditsStop` when the account
    ran dry and `StoppedWithSummary` on any other early end, the partial output written.
    """
    options, spec, output, chunk = run.options, run.spec, run.output, run.chunk
    store, job, client, scheduler, stop = run.store, run.job, run.client, run.scheduler, run.stop
    scan = await asyncio.to_thread(scan_file, spec)
    spec = scan.spec  # as the scan read it: the join must decode the file the same way
    check_output(spec, output, rows=scan.rows)
    unique_emails = len(scan.unique)
    live.rows, live.unique = scan.rows, unique_emails
    live.stage = "planning"
    reporter(live)
    planned = await asyncio.to_thread(
        job_steps.plan_job, run.state, job, scan.unique.to_pylist(), chunk, options.recheck
    )
    live.to_submit = planned.to_submit
    # The emails are in the store now: holding them through the join would add to its peak.
    scan = replace(scan, unique=scan.unique[:0])
    deadline = deadline_for(options, started)
    engine = Engine(
        store,
        job.id,
        client,
        scheduler,
        stop=stop,
        deadline=deadline,
        chunk_size=chunk,
        # A trial's fake dies with its run: a batch it sent is unknown to this run's fake.
        follow_policy=FollowPolicy(resend_unknown=options.api.simulate),
        locks=run.locks,
    )
    live.counters = engine.counters
    # Not before: a run that stops in the scan or the plan has bought nothing, and leaves
    # the job's state (`done`, say) as it found it.
    job_steps.mark_validating(store, job.id)
    live.stage = "validating"
    ticker = asyncio.create_task(_tick(live, reporter))
    # With shared state, `cancel` may run on another host, which cannot signal this process.
    watcher = None
    if run.state.shared:
        watcher = asyncio.create_task(watch_for_cancel(run.locks, job.id, stop))
    try:
        counters = await engine.run()
        # Another run took the job (its lock connection dropped): the job is that run's now.
        lost = lock_lost(run.locks, job.id) is not None
        # `ample-batch cancel` stopped this run (SIGTERM): its validations are canceled too.
        canceled = not lost and run.locks.cancel_requested(job.id)
        if canceled:
            live.stage = "canceling"
            await job_steps.cancel_validations(
                store, job.id, run.canceller, scheduler, run.locks, simulate=options.api.simulate
            )
            counters.stop_reason = "canceled"
    finally:
        ticker.cancel()
        if watcher is not None:
            watcher.cancel()
    progress = await asyncio.to_thread(job_steps.progress, run.state, job.id)
    # Complete means every unique email has a settled verdict. Emails a canceled or
    # out-of-credits validation gave back are in a planned batch again; coverage is still
    # counted, for a state whose job missed some (planning killed between its transactions).
    complete = (
        progress.emails >= unique_emails
        and progress.pending == 0
        and not store.batches(job.id, BatchState.PLANNED)
    )
    live.stage = "writing"
    reporter(live)
    target = output if complete else partial_path(output)
    verdicts = await asyncio.to_thread(job_steps.job_verdicts, run.state, job.id)
    job_steps.remove_stale_temp_files(target)
    split = options.split and complete  # split files are the finished list's, never partial
    if split:
        for value in SPLIT_VALUES:
            job_steps.remove_stale_temp_files(split_path(target, value))
    missing = "failed" if complete else "pending"
    written = await asyncio.to_thread(
        functools.partial(
            enrich_file,
            spec,
            verdicts,
            target,
            missing=missing,
            check=False,
            sent_column=options.sent_column,
            split=split,
        )
    )
    if complete:
        with contextlib.suppress(FileNotFoundError):
            partial_path(output).unlink()
    summary = Summary(
        job=job.id,
        input=str(spec.path),
        email_column=spec.email_column,
        output=str(target),
        complete=complete,
        rows=scan.rows,
        unique_emails=unique_emails,
        cached=progress.cached,
        # The output's rows, not the scan's: an email the API refused as malformed is
        # written `invalid_syntax` too, and the summary must count what the file holds.
        invalid=written.results.get("invalid_syntax", 0),
        refused=max(0, written.results.get("invalid_syntax", 0) - scan.invalid),
        blank=scan.blank,
        duplicates=scan.duplicates,
        credits_spent=counters.emails_submitted,
        possible_double_charges=job_steps.job_double_charges(store, job.id),
        remaining=unique_emails - progress.emails + progress.pending,
        failed=progress.failed,
        verdicts=written.results,
        elapsed_seconds=round(time.monotonic() - started, 3),
        stop_reason=counters.stop_reason,
        warnings=list(spec.warnings)
        + counters.notes
        + _output_warnings(options, output, complete)
        + _split_warnings(options, complete),
        simulated=options.api.simulate,
        usage_limit=str(options.api.resolved_usage_limit),
        rechecked=planned.rechecked,
        split=written.split,
    )
    state = DONE if complete else CANCELED if canceled else PARTIAL
    if options.report is not None:
        # On every outcome with a summary, so a stopped run shows how far it got.
        problem = await asyncio.to_thread(
            write_run_report, run.state, job.id, options.report, summary.as_dict(), state
        )
        if problem:
            summary.warnings.append(problem)
        else:
            summary.report = str(options.report.absolute())
    if not lost:  # the job's row is its new owner's to write
        store.update_job(job.id, state=state, stats={**summary.as_dict(), **run.identity_stats})
    await asyncio.to_thread(job_steps.prune_cache, run.state, options.cache_ttl, options.recheck)
    if complete:
        return summary
    if counters.out_of_credits:
        raise InsufficientCreditsStop(summary)
    raise StoppedWithSummary(summary)


def _output_warnings(options: ValidateOptions, output: Path, complete: bool) -> list[str]:
    """What a person opening the output folder must not misread as real verdicts."""
    if options.api.simulate:
        return [f"simulated run: the verdicts in {output.name} are made up; no credit was spent"]
    if not complete and output.exists():
        # Only a finished job writes this path, and this one is not finished: an earlier
        # --simulate trial (or another job) left it.
        return [
            f"{output} is not this job's result (a --simulate trial or another run wrote it); "
            f"this job's rows so far are in {partial_path(output).name}"
        ]
    return []


def _split_warnings(options: ValidateOptions, complete: bool) -> list[str]:
    """Why a --split run that stopped early left no split files."""
    if options.split and not complete:
        return ["--split: the split files are written once the job completes"]
    return []


async def _tick(live: LiveStatus, reporter: Reporter) -> None:
    """Report the live status twice a second, until canceled."""
    while True:
        reporter(live)
        await asyncio.sleep(0.5)

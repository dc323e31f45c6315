"""The orchestrator: one function per command, wiring the pipeline stages together.

    options = ValidateOptions(input=Path("leads.csv"), state_dir=d, api=ApiOptions(simulate=True))
    summary = validate(options)
    summary.complete, summary.output

    read -> plan -> (schedule + client + store, driven by execute.Engine) -> join -> write

Everything the CLI does is reachable from here; the CLI only parses options and maps
exceptions to exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Unpack

from ..api.client import ValidationClient
from ..errors import EXIT_TEMPFAIL, InsufficientCredits, Stopped
from ..files.join import enrich_file
from ..files.output import check_output, partial_path, remove_temp_files
from ..files.scan import scan as scan_file
from ..files.spec import InputSpec
from ..files.split import SPLIT_VALUES, split_path
from ..jobs.backend import State, job_locks, lock_lost, open_store
from ..jobs.db import translated
from ..jobs.engine import Engine
from ..jobs.locks import JobLocks, job_lock
from ..jobs.protocol import JobStore
from ..jobs.records import BatchState, Job
from ..jobs.state_dir import make_state_dir, refuse_reset_state
from ..options import ValidateOptions
from ..quota.scheduler import Scheduler, key_id
from . import steps as job_steps
from .html_report import write_run_report
from .jobs import watch_for_cancel
from .keywords import FileKeywords, PathLike, resolve
from .prepare import prepare
from .session import T, api_session, resolve_api, scheduler_for
from .summary import LiveStatus, Reporter, Summary
from .sync import run_sync


def validate(
    input: PathLike | ValidateOptions,
    /,
    *,
    reporter: Reporter | None = None,
    **options: Unpack[FileKeywords],
) -> Summary:
    """Run (or resume) the job for the `input` file until it is done or must stop.

    Takes the file and keyword options named like the CLI's (`output`, `email_column`,
    `api_key`, `base_url`, `state_dir`, `simulate`, `usage_limit="15000/hour"`, `rate_limit`,
    `chunk_size`, `cache_ttl="30d"`, `max_runtime`, `progress=True`, ...), with its defaults,
    or one ValidateOptions. Works inside a running event loop too (a notebook).

        validate("leads.csv", simulate=True).output    # 'leads.validated.csv'

    Returns the summary of a complete run. Raises Stopped (partial output written) when the
    run ends early, InsufficientCredits when the account ran dry (partial output written),
    InputError, Unauthorized, JobBusy as they arise; TypeError for an unknown keyword.
    """
    call = resolve("validate", input, options, reporter)
    summary = run_sync(lambda stop: _validate(call.options, call.reporter, stop))
    call.done(summary)
    return summary


async def avalidate(
    input: PathLike | ValidateOptions,
    /,
    *,
    reporter: Reporter | None = None,
    stop: asyncio.Event | None = None,
    **options: Unpack[FileKeywords],
) -> Summary:
    """`validate` on the caller's event loop; setting `stop` ends the run as a first Ctrl-C
    does (it wraps up, writes the partial output and raises Stopped).

        summary = await avalidate("leads.csv", simulate=True)
    """
    call = resolve("avalidate", input, options, reporter)
    summary = await _validate(call.options, call.reporter, stop)
    call.done(summary)
    return summary


async def _validate(
    options: ValidateOptions, reporter: Reporter, stop: asyncio.Event | None = None
) -> Summary:
    started = time.monotonic()
    spec, output, chunk, state = prepare(options)
    _base_url, key = resolve_api(options.api)
    if not state.shared:
        make_state_dir(state.dir)
        refuse_reset_state(state.dir, key_id(key))
    live = LiveStatus(stage="reading the input", usage_limit=options.api.resolved_usage_limit)
    reporter(live)
    if stop is None:
        stop = asyncio.Event()
    with _signals(stop):
        # The job is known before the lock, the key check and the scan: a busy job is refused
        # at once, and its stored output path left alone. Hashing is off the loop, so
        # signals stay prompt. An unchanged file is not hashed again (files/identity.py).
        fingerprint, identity = await asyncio.to_thread(job_steps.input_fingerprint, state, spec)
        input_path = str(spec.path.resolve())
        job_id = state.job_id(input_path, fingerprint, spec.email_column, sheet=spec.identity_sheet)
        locks = job_locks(state)
        with contextlib.closing(locks), job_lock(locks, job_id):
            live.stage = "checking the API key"
            reporter(live)
            async with api_session(options.api) as (session, base_url, api_key):
                ledger = state.dir / f"ledger-{key_id(api_key)}.sqlite"
                with translated(ledger):  # a corrupt or locked ledger, named
                    scheduler = scheduler_for(options.api, state, api_key)
                live.quota_used = scheduler.usage_in_window
                live.next_submission = lambda emails: scheduler.wait_for(min(emails, chunk))
                try:
                    new_client = functools.partial(
                        ValidationClient,
                        session,
                        base_url=base_url,
                        api_key=api_key,
                        throttle=scheduler,
                        policy=options.api.retry,
                    )
                    client = new_client(stop=stop)
                    # Fail on a bad key before reading the whole file; a hung API or a
                    # full request ledger must not outlast --max-runtime or Ctrl-C here either.
                    await _before_the_engine(
                        client.check_key(), stop, _deadline(options, started), "checking the key"
                    )
                    live.stage = "scanning"
                    reporter(live)
                    with open_store(state) as store:
                        job = store.open_job(
                            input_path=input_path,
                            fingerprint=fingerprint,
                            email_column=spec.email_column,
                            output_path=str(output),
                            cache_ttl=options.cache_ttl,
                            key_id=key_id(api_key),
                            base_url=base_url,
                            sheet=spec.identity_sheet,
                        )
                        job_steps.note_run(store, job, options.api.resolved_usage_limit)
                        # Cancels go out even once a stop is asked for (it is what `cancel` asks).
                        canceller = new_client()
                        # Recorded with the summary: the next run trusts it, not a re-hash.
                        identity_stats = job_steps.identity_stats(job, identity)
                        run = _JobRun(
                            options,
                            spec,
                            output,
                            chunk,
                            store,
                            job,
                            client,
                            scheduler,
                            stop,
                            canceller,
                            state,
                            locks,
                            identity_stats,
                        )
                        return await _run_job(run, live, reporter, started)
                finally:
                    scheduler.close()


@dataclass(frozen=True)
class _JobRun:
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


async def _run_job(run: _JobRun, live: LiveStatus, reporter: Reporter, started: float) -> Summary:
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
    deadline = _deadline(options, started)
    engine = Engine(
        store,
        job.id,
        client,
        scheduler,
        stop=stop,
        deadline=deadline,
        chunk_size=chunk,
        locks=run.locks,
    )
    live.counters = engine.counters
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
            await job_steps.cancel_validations(store, job.id, run.canceller, scheduler, run.locks)
            counters.stop_reason = "canceled"
    finally:
        ticker.cancel()
        if watcher is not None:
            watcher.cancel()
    progress = await asyncio.to_thread(job_steps.progress, run.state, job.id)
    # Complete means every unique email has a settled verdict. Emails released by a canceled
    # or out-of-credits validation are in no batch at all, so count coverage, not just pending.
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
        invalid=scan.invalid,
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
    state = "done" if complete else "canceled" if canceled else "partial"
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


def _deadline(options: ValidateOptions, started: float) -> float | None:
    """When --max-runtime ends this run, on the monotonic clock."""
    return None if options.max_runtime is None else started + options.max_runtime


async def _before_the_engine(
    step: Awaitable[T], stop: asyncio.Event, deadline: float | None, what: str
) -> T:
    """Await a step that comes before any submission, cut short by a stop or the deadline.

    Nothing that costs money is in flight before the engine starts, so cutting the step's
    request (or its wait for a request slot) is always safe.
    """
    task = asyncio.ensure_future(step)
    stopped = asyncio.ensure_future(stop.wait())
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        await asyncio.wait({task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    reason = "interrupted" if stop.is_set() else "max runtime reached"
    raise Stopped(
        f"{reason} while {what}; nothing was submitted; run the same command again to resume"
    )


class StoppedWithSummary(Stopped):
    """Stopped early; the partial output is written and `summary` says how far it got."""

    def __init__(self, summary: Summary) -> None:
        reason = summary.stop_reason or "stopped"
        super().__init__(
            f"{reason}: {summary.remaining:,} email(s) still to validate; partial output in "
            f"{summary.output}; run the same command again to resume"
        )
        self.summary = summary


class InsufficientCreditsStop(InsufficientCredits):
    """Out of credits; the partial output is written and `summary` says what remains."""

    def __init__(self, summary: Summary) -> None:
        super().__init__(
            f"the account is out of email credits: {summary.remaining:,} email(s) still to "
            f"validate; partial output in {summary.output}; top up, then run the same command "
            "again (nothing done is paid twice)"
        )
        self.summary = summary


async def _tick(live: LiveStatus, reporter: Reporter) -> None:
    while True:
        reporter(live)
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop submitting and wrap up. Second: leave at once (state is safe:
    every transition is a committed transaction).

    Only the main thread can take signals: elsewhere (a notebook's run on a thread of its
    own, a loop that cannot take them) the run goes without, and the caller's handlers are put
    back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            # Leaving without unwinding: the output being written would stay behind.
            remove_temp_files()
            os.write(2, b"ample-batch: interrupted twice: stopped at once; run again to resume\n")
            os._exit(EXIT_TEMPFAIL)
        stop.set()

    installed: dict[signal.Signals, Any] = {}
    # A loop without signal support (Windows' Proactor, some embedders) goes without.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, on_signal)
            installed[sig] = previous
    try:
        yield
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)

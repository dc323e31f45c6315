"""The orchestrator of `validate` and `avalidate`, wiring the pipeline stages together.

    options = ValidateOptions(input=Path("leads.csv"), state_dir=d, api=ApiOptions(simulate=True))
    summary = validate(options)
    summary.complete, summary.output

    read -> plan -> (schedule + client + store, driven by execute.Engine) -> join -> write

Everything the CLI does is reachable from here; the CLI only parses options, calls
`run_validate` (the same run, its messages in the CLI's words) and maps exceptions to exit
codes. This module sets a run up (the job's lock, the key check, the store); `job_run` runs
the job, and `stopping` is how a run ends early.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import Unpack

from ..api.client import ValidationClient
from ..jobs.backend import job_locks, open_store
from ..jobs.locks import job_lock
from ..jobs.state_dir import make_state_dir, refuse_reset_state
from ..options import ValidateOptions
from ..quota.scheduler import key_id
from . import steps as job_steps
from .job_run import JobRun, run_job
from .keywords import FileKeywords, PathLike, resolve
from .prepare import prepare
from .session import api_session, resolve_api, scheduler_for
from .stopping import before_the_engine, deadline_for, stop_on_signals
from .summary import LiveStatus, Reporter, Summary
from .sync import run_sync
from .wording import python_words, with_python_warnings


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
    with python_words():
        call = resolve("validate", input, options, reporter)
        summary = run_sync(lambda stop: run_avalidate(call.options, call.reporter, stop))
    call.done(summary)
    return with_python_warnings(summary)


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
    with python_words():
        call = resolve("avalidate", input, options, reporter)
        summary = await run_avalidate(call.options, call.reporter, stop)
    call.done(summary)
    return with_python_warnings(summary)


def run_validate(options: ValidateOptions, reporter: Reporter) -> Summary:
    """`validate` as the command line runs it: its messages name the CLI's options."""
    return run_sync(lambda stop: run_avalidate(options, reporter, stop))


async def run_avalidate(
    options: ValidateOptions, reporter: Reporter, stop: asyncio.Event | None = None
) -> Summary:
    """The run behind `validate` and `avalidate`, its messages in the command line's words
    (the public functions put them in Python's)."""
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
    with stop_on_signals(stop):
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
                    await before_the_engine(
                        client.check_key(), stop, deadline_for(options, started), "checking the key"
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
                        run = JobRun(
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
                        return await run_job(run, live, reporter, started)
                finally:
                    scheduler.close()

"""The orchestrator: one function per command, wiring the pipeline stages together.

    summary = validate(ValidateOptions(input=Path("leads.csv"), simulate=True, state_dir=d))
    summary.complete, summary.output

    read -> plan -> (schedule + client + store, driven by execute.Engine) -> join -> write

Everything the CLI does is reachable from here; the CLI only parses options and maps
exceptions to exit codes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from . import read, write
from .client import (
    DEFAULT_BASE_URL,
    RetryPolicy,
    ValidationClient,
    check_base_url,
    new_session,
)
from .errors import InputError, InsufficientCredits, Stopped
from .execute import Counters, Engine
from .join import Verdicts, dictionaries_for, enrich_batches
from .limits import Limit
from .locks import job_lock
from .plan import chunk_size_for, plan_emails
from .schedule import ScheduleConfig, Scheduler, key_id
from .schema import BatchState, Job
from .store import Store

SIMULATED_KEY = "simulated-key"


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    """How to reach the API, and the account's limits."""

    api_key: str | None = field(default=None, repr=False)
    """Bearer token; never printed, logged or stored."""
    base_url: str = DEFAULT_BASE_URL
    """API root; plain http only for loopback hosts."""
    usage_limit: Limit = Limit(15000, 3600.0)
    """Emails submitted per rolling window."""
    rate_limit: Limit = Limit(500, 60.0)
    """Requests per rolling window, all endpoints together."""
    simulate: bool = False
    """Use the built-in fake API on loopback: no key, no credits."""
    retry: RetryPolicy = RetryPolicy()
    """Retries, timeouts and polling defaults."""


@dataclass(frozen=True, kw_only=True)
class ValidateOptions:
    """Everything `ample-batch validate` takes."""

    input: Path
    """The lead list: .csv .tsv .txt .csv.gz .parquet .xlsx."""
    output: Path | None = None
    """Where the enriched list goes; defaults to <stem>.validated<ext> beside the input."""
    email_column: str | None = None
    """The column holding the email; detected when None."""
    encoding: str | None = None
    """CSV text encoding; UTF-8 with a cp1252 fallback when None."""
    sheet: str | None = None
    """XLSX sheet name; the first sheet when None."""
    api: ApiOptions = ApiOptions()
    """The API and its limits."""
    chunk_size: int | None = None
    """Emails per POST; min(100000, usage-limit count) when None."""
    state_dir: Path
    """Job state, result cache and quota ledgers."""
    cache_ttl: float = 30 * 86400.0
    """Reuse verdicts younger than this many seconds; 0 never reuses."""
    max_runtime: float | None = None
    """Stop submitting after this many seconds and exit 75."""


@dataclass
class Summary:
    """The outcome of a validate run; also written as JSON by --summary-json."""

    job: str
    input: str
    email_column: str
    output: str
    complete: bool
    rows: int
    unique_emails: int
    cached: int
    invalid: int
    blank: int
    duplicates: int
    credits_spent: int
    possible_double_charges: int
    remaining: int
    failed: int
    verdicts: dict[str, int]
    elapsed_seconds: float
    stop_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LiveStatus:
    """What a progress display reads while a run goes on."""

    stage: str = "starting"
    rows: int = 0
    unique: int = 0
    to_submit: int = 0
    counters: Counters | None = None
    quota_used: Callable[[], int] | None = None
    usage_limit: Limit | None = None
    next_submission: Callable[[int], float] | None = None
    """Seconds until a batch of this many emails (at most one chunk) may be submitted."""


Reporter = Callable[[LiveStatus], None]


def resolve_api(options: ApiOptions) -> tuple[str, str]:
    """The (base URL, key) to use, or InputError before anything is read or spent."""
    if options.simulate:
        return options.base_url, SIMULATED_KEY
    if not options.api_key:
        raise InputError(
            "no API key: set AMPLEMARKET_API_KEY or pass --api-key (or try --simulate)"
        )
    return check_base_url(options.base_url), options.api_key


@contextlib.asynccontextmanager
async def api_session(
    options: ApiOptions,
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, str]]:
    """An HTTP session, base URL and key; with --simulate, the fake API on loopback too."""
    base_url, api_key = resolve_api(options)
    async with contextlib.AsyncExitStack() as stack:
        if options.simulate:
            from .fake import FakeConfig, start_fake

            fake = await stack.enter_async_context(
                await start_fake(
                    FakeConfig(
                        api_key=SIMULATED_KEY,
                        emails_per_second=20000.0,
                        retry_after=0.5,
                        usage_limit=options.usage_limit,
                        rate_limit=options.rate_limit,
                    )
                )
            )
            base_url = fake.url
        session = await stack.enter_async_context(new_session())
        yield session, base_url, api_key


def scheduler_for(options: ApiOptions, state_dir: Path, api_key: str) -> Scheduler:
    """The shared ledgers for this key, in the state dir."""
    return Scheduler(
        ScheduleConfig(
            usage_limit=options.usage_limit,
            rate_limit=options.rate_limit,
            ledger_dir=state_dir,
            key_id=key_id(api_key),
        )
    )


def _prepare(options: ValidateOptions) -> tuple[read.InputSpec, Path, int]:
    """Checks that need no network: the input, the output path, the chunk size."""
    spec = read.inspect_input(
        options.input,
        email_column=options.email_column,
        encoding=options.encoding,
        sheet=options.sheet,
    )
    output = options.output or write.default_output_path(options.input)
    write.check_output(spec, output)
    chunk = chunk_size_for(options.chunk_size, options.api.usage_limit)
    return spec, output, chunk


def validate(options: ValidateOptions, *, reporter: Reporter | None = None) -> Summary:
    """Run (or resume) the job for `options.input` until it is done or must stop.

    Returns the summary of a complete run. Raises Stopped (partial output written) when the
    run ends early, InsufficientCredits when the account ran dry (partial output written),
    InputError, Unauthorized, JobBusy as they arise.
    """
    return asyncio.run(_validate(options, reporter or (lambda status: None)))


async def _validate(options: ValidateOptions, reporter: Reporter) -> Summary:
    started = time.monotonic()
    spec, output, chunk = _prepare(options)
    resolve_api(options.api)
    live = LiveStatus(stage="checking the API key", usage_limit=options.api.usage_limit)
    reporter(live)
    stop = asyncio.Event()
    with _signals(stop):
        async with api_session(options.api) as (session, base_url, api_key):
            scheduler = scheduler_for(options.api, options.state_dir, api_key)
            live.quota_used = scheduler.usage_in_window
            live.next_submission = lambda emails: scheduler.wait_for(min(emails, chunk))
            try:
                client = ValidationClient(
                    session,
                    base_url=base_url,
                    api_key=api_key,
                    throttle=scheduler,
                    policy=options.api.retry,
                    stop=stop,
                )
                # Fail on a bad key before reading the whole file.
                await client.check_key()
                live.stage = "scanning"
                reporter(live)
                # Hashing a big file takes seconds: off the loop, so signals stay prompt.
                fingerprint = await asyncio.to_thread(read.fingerprint, spec)
                with Store(options.state_dir) as store:
                    job = store.open_job(
                        input_path=str(spec.path.resolve()),
                        fingerprint=fingerprint,
                        email_column=spec.email_column,
                        output_path=str(output),
                        cache_ttl=options.cache_ttl,
                    )
                    with job_lock(options.state_dir, job.id):
                        run = _JobRun(
                            options, spec, output, chunk, store, job, client, scheduler, stop
                        )
                        return await _run_job(run, live, reporter, started)
            finally:
                scheduler.close()


@dataclass(frozen=True)
class _JobRun:
    """Everything one run of one job works with, once the checks have passed."""

    options: ValidateOptions
    spec: read.InputSpec
    output: Path
    chunk: int
    store: Store
    job: Job
    client: ValidationClient
    scheduler: Scheduler
    stop: asyncio.Event


async def _run_job(run: _JobRun, live: LiveStatus, reporter: Reporter, started: float) -> Summary:
    options, spec, output, chunk = run.options, run.spec, run.output, run.chunk
    store, job, client, scheduler, stop = run.store, run.job, run.client, run.scheduler, run.stop
    scan = await asyncio.to_thread(read.scan, spec)
    spec = scan.spec  # as the scan read it: the join must decode the file the same way
    write.check_output(spec, output, rows=scan.rows)
    unique_emails = len(scan.unique)
    live.rows, live.unique = scan.rows, unique_emails
    plan = plan_emails(
        scan.unique.to_pylist(),
        store.batched_emails(job.id),
        store.fresh_verdicts(job.cache_cutoff),
    )
    store.plan(job.id, cached=plan.cached, new=plan.new, chunk_size=chunk)
    live.to_submit = len(plan.new)
    # The emails are in the store now: holding them through the join would add to its peak.
    del plan
    scan = replace(scan, unique=scan.unique[:0])
    deadline = None if options.max_runtime is None else started + options.max_runtime
    engine = Engine(
        store, job.id, client, scheduler, stop=stop, deadline=deadline, chunk_size=chunk
    )
    live.counters = engine.counters
    live.stage = "validating"
    ticker = asyncio.create_task(_tick(live, reporter))
    try:
        counters = await engine.run()
    finally:
        ticker.cancel()
    progress = store.progress(job.id)
    # Complete means every unique email has a settled verdict. Emails released by a canceled
    # or out-of-credits validation are in no batch at all, so count coverage, not just pending.
    complete = (
        progress.emails >= unique_emails
        and progress.pending == 0
        and not store.batches(job.id, BatchState.PLANNED)
    )
    live.stage = "writing"
    reporter(live)
    target = output if complete else write.partial_path(output)
    verdicts = Verdicts.from_rows(store.job_verdicts(job.id), normalised=True)
    _remove_stale_temp_files(target)
    verdict_counts = await asyncio.to_thread(
        _write, spec, verdicts, target, "failed" if complete else "pending"
    )
    if complete:
        with contextlib.suppress(FileNotFoundError):
            write.partial_path(output).unlink()
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
        possible_double_charges=_job_double_charges(store, job.id),
        remaining=unique_emails - progress.emails + progress.pending,
        failed=progress.failed,
        verdicts=verdict_counts,
        elapsed_seconds=round(time.monotonic() - started, 3),
        stop_reason=counters.stop_reason,
        warnings=list(spec.warnings) + counters.notes,
    )
    store.update_job(job.id, state="done" if complete else "partial", stats=summary.as_dict())
    if complete:
        return summary
    if counters.out_of_credits:
        raise InsufficientCreditsStop(summary)
    raise StoppedWithSummary(summary)


def _job_double_charges(store: Store, job_id: str) -> int:
    job = store.get_job(job_id)
    return job.possible_double_charges if job else 0


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


def _remove_stale_temp_files(target: Path) -> None:
    """A run killed mid-write (SIGKILL cannot be caught) leaves its temporary file behind;
    the job lock guarantees no other run is writing this output now."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _write(spec: read.InputSpec, verdicts: Verdicts, target: Path, missing: str) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()

    def counted(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            column = batch.column(batch.schema.get_field_index("email_result"))
            for item in pc.value_counts(column).to_pylist():
                counts[str(item["values"])] += int(item["counts"])
            yield batch

    batches = enrich_batches(
        spec, verdicts, missing=missing, dictionaries=dictionaries_for(spec, target)
    )
    write.write_output(spec, counted(batches), target)
    return dict(sorted(counts.items()))


async def _tick(live: LiveStatus, reporter: Reporter) -> None:
    while True:
        reporter(live)
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop submitting and wrap up. Second: leave at once (state is safe:
    every transition is a committed transaction)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            os.write(2, b"ample-batch: interrupted twice: stopped at once; run again to resume\n")
            os._exit(75)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

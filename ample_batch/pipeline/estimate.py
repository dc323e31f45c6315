"""`estimate`: what validating a file would cost and take, without the API."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Unpack

from ..files.inspect import fingerprint as fingerprint_of
from ..files.scan import scan as scan_file
from ..jobs.backend import has_store, open_store
from ..jobs.plan import Plan, plan_emails, schedule_for
from ..jobs.protocol import JobStore
from ..jobs.records import Job
from ..jobs.stale import StaleVerdicts
from ..options import ValidateOptions, cache_cutoff
from ..quota.ideal import NightOnly, night_only_last_submission
from ..recheck import RecheckPolicy
from .keywords import ESTIMATE_KEYWORDS, EstimateKeywords, PathLike, options_for
from .prepare import prepare
from .wording import python_words, with_python_warnings


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
    """Epoch seconds of the last submission, running round the clock from now (the hourly
    cron recipe, or one long run) at the usage limit."""
    night_only_finish: float
    """Epoch seconds of the last submission under the night-only cron recipe: a run from
    each night's 22:00 local time, for 8 hours (`quota.ideal.night_only_last_submission`)."""
    night_only_nights: int
    """How many nights that takes."""
    warnings: list[str] = field(default_factory=list)
    """What the user should know about how the file was read, e.g. `not UTF-8: read as cp1252`."""
    rechecked: dict[str, int] = field(default_factory=dict)
    """Of the credits needed, how many each `--recheck` rule sends again, by verdict kind
    (cached or already-done verdicts it finds stale)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(input: PathLike | ValidateOptions, /, **options: Unpack[EstimateKeywords]) -> Estimate:
    """What `validate` of the `input` file would cost and take: scans the file and the cache,
    makes no API call and spends nothing.

    Takes the file and the keywords of `validate` that bear on the plan (`email_column`,
    `encoding`, `sheet`, `state_dir`, `state_url`, `state_schema`, `simulate`,
    `usage_limit="15000/hour"`, `rate_limit`, `chunk_size`, `cache_ttl`, `recheck`), with
    its defaults, or one ValidateOptions.

        estimate("leads.csv", usage_limit="15000/hour").credits_needed

    Raises InputError as `validate` would before a run; TypeError for an unknown keyword.
    """
    with python_words():
        ready = options_for("estimate", input, options, ESTIMATE_KEYWORDS)
        return with_python_warnings(run_estimate(ready))


def run_estimate(options: ValidateOptions) -> Estimate:
    """`estimate` of ready options, as the command line runs it: messages in its words."""
    # An estimate writes nothing: the output is checked when `validate` runs.
    spec, _output, chunk, state = prepare(options, writes=False)
    scan = scan_file(spec)
    spec = scan.spec
    already: list[str] = []
    cutoff = cache_cutoff(time.time(), options.cache_ttl)
    rechecked = dict.fromkeys((kind for kind, _ in options.recheck.max_age), 0)
    if has_store(state):
        with open_store(state) as store:
            job_id = state.job_id(
                str(spec.path.resolve()),
                fingerprint_of(spec),
                spec.email_column,
                sheet=spec.identity_sheet,
            )
            job = store.get_job(job_id)
            if job is not None:
                already = store.batched_emails(job.id)
                cutoff = job.cache_cutoff
            # Streamed: the cache may hold millions of verdicts for other lists.
            plan, already, rechecked = _plan_as_validate_would(
                store, job, scan.unique.to_pylist(), already, cutoff, options.recheck
            )
    else:
        plan = plan_emails(scan.unique.to_pylist(), already, ())
    timing = schedule_for(
        len(plan.new),
        chunk=chunk,
        usage=options.api.resolved_usage_limit,
        rate=options.api.resolved_rate_limit,
    )
    now = time.time()
    # Nothing to send is done now, not at the next night's start.
    night = (
        night_only_last_submission(
            now, timing.last_submission, options.api.resolved_usage_limit.period
        )
        if plan.new
        else NightOnly(now, 0)
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
        earliest_finish=now + timing.last_submission,
        night_only_finish=night.last_submission,
        night_only_nights=night.nights,
        warnings=list(spec.warnings),
        rechecked=rechecked,
    )


def _plan_as_validate_would(
    store: JobStore,
    job: Job | None,
    unique: list[str],
    already: list[str],
    cutoff: float,
    recheck: RecheckPolicy,
) -> tuple[Plan, list[str], dict[str, int]]:
    """The plan `steps.plan_job` would make, re-check policy included, writing nothing:
    the plan, the emails left as already done, and how many each rule sends again."""
    if not recheck:
        return plan_emails(unique, already, store.fresh_verdicts(cutoff)), already, {}
    stale = StaleVerdicts.read(store, recheck, now=time.time(), wanted=set(unique))
    if job is not None:
        own = set(stale.own(store.job_verdicts(job.id)))
        already = [email for email in already if email not in own]
    plan = plan_emails(unique, already, stale.current(store.fresh_verdicts(cutoff)))
    return plan, already, stale.rechecked(plan.new)

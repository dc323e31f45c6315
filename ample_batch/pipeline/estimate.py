"""`estimate`: what validating a file would cost and take, without the API."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..files.inspect import fingerprint as fingerprint_of
from ..files.scan import scan as scan_file
from ..jobs.backend import has_store, open_store
from ..jobs.plan import plan_emails, schedule_for
from ..options import ValidateOptions, cache_cutoff
from .prepare import prepare


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
    # An estimate writes nothing: the output is checked when `validate` runs.
    spec, _output, chunk, state = prepare(options, writes=False)
    scan = scan_file(spec)
    spec = scan.spec
    already: list[str] = []
    cutoff = cache_cutoff(time.time(), options.cache_ttl)
    if has_store(state):
        with open_store(state) as store:
            job = store.get_job(
                state.job_id(str(spec.path.resolve()), fingerprint_of(spec), spec.email_column)
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

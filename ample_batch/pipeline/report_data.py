"""The figures of a job's HTML report, gathered from the job store and the run's summary.

The pure part turns what the store holds into `ReportData`: the summary a run recorded (in
the job's stats, or the `Summary` just made), the batches with their submission times and
sizes, and the job's per-email verdicts. `load_report_data` reads those from the store.

    data = report_data(job, summary.as_dict(), batches, verdicts, usage_limit=limit)
    data.verdicts, data.hours[0].emails, data.undeliverable_domains[0].domain
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..jobs.backend import Where, find_job, open_store
from ..jobs.records import Batch, BatchState, Job, Progress
from ..limits import Limit, parse_limit

TOP_DOMAINS = 10
"""How many domains each of the report's two domain tables lists."""

HOUR = 3600.0


@dataclass(frozen=True)
class Figure:
    """One number of the report, named as in the summary (`key`) so a test can compare."""

    key: str
    label: str
    value: int
    note: str = ""


@dataclass(frozen=True)
class DomainCount:
    """A domain, how many of the job's unique addresses there are of a kind, and of all."""

    domain: str
    count: int
    addresses: int


@dataclass(frozen=True)
class HourCount:
    """Emails the job submitted in one clock hour starting at `start` (epoch seconds)."""

    start: float
    emails: int


@dataclass(frozen=True)
class ReportData:
    """Everything the HTML report shows; rendering adds nothing but layout."""

    job: str
    state: str
    """As `status` shows it (pipeline/job_states.py): done, partial, canceled, running,
    stopped, or new (no run recorded yet)."""
    input: str
    email_column: str
    output: str | None
    summary: dict[str, Any] | None
    """The summary of the job's last recorded run (`Summary.as_dict()`); None if none ended."""
    verdicts: dict[str, int]
    verdict_unit: str
    """`rows` (the summary's counts, as in the output) or `unique emails` (from the store)."""
    credits: list[Figure]
    undeliverable_domains: list[DomainCount]
    catch_all_domains: list[DomainCount]
    hours: list[HourCount]
    usage_limit: Limit | None
    generated_at: float
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.summary and self.summary.get("complete")) and self.state == "done"

    @property
    def simulated(self) -> bool:
        return bool(self.summary and self.summary.get("simulated"))

    @property
    def submitted(self) -> int:
        """Emails submitted over every run of the job (the timeline's total)."""
        return sum(hour.emails for hour in self.hours)


def summary_of(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The summary a run recorded in the job's stats, without the live run's note."""
    if "rows" not in stats or "verdicts" not in stats:
        return None
    # Not the summary's: the live run's note, and the input's identity (pipeline/steps.py).
    return {key: value for key, value in stats.items() if key not in ("run", "input_file")}


def usage_limit_of(stats: dict[str, Any]) -> Limit | None:
    """The usage limit the job last ran under, if its stats say."""
    text = stats.get("usage_limit")
    if isinstance(text, str):
        try:
            return parse_limit(text)
        except InputError:
            return None
    pace = (stats.get("run") or {}).get("emails_per_second")
    return Limit(round(pace * HOUR), HOUR) if pace else None


def hourly(batches: Iterable[Batch]) -> list[HourCount]:
    """Emails submitted per clock hour, from the first submission's hour to the last's.

    Hours with nothing submitted are kept (a cron job's idle day shows as such). A batch counts
    at its last submission with its current size: emails it gave back (canceled, out of
    credits, errored) count where they were submitted again.

    >>> from ample_batch.jobs.records import Batch, BatchState
    >>> b = lambda at, n: Batch(1, "j", "api", BatchState.DONE, 1, n, None, None, None, None,
    ...                         None, at, None)
    >>> [(h.start, h.emails) for h in hourly([b(7300.0, 5), b(7400.0, 2), b(14500.0, 1)])]
    [(7200.0, 7), (10800.0, 0), (14400.0, 1)]
    """
    counts: collections.Counter[float] = collections.Counter()
    for batch in batches:
        # Adopted batches are another job's purchase; a planned one was refused, not sent.
        if batch.source != "api" or batch.submitted_at is None:
            continue
        if batch.state in (BatchState.PLANNED, BatchState.WAITING):
            continue
        counts[batch.submitted_at // HOUR * HOUR] += batch.size
    if not counts:
        return []
    first, last = min(counts), max(counts)
    steps = int((last - first) // HOUR) + 1
    return [HourCount(first + i * HOUR, counts[first + i * HOUR]) for i in range(steps)]


def per_hour(limit: Limit) -> int:
    """The most emails one clock hour can hold under `limit`.

    >>> per_hour(Limit(15000, 3600.0)), per_hour(Limit(1000, 3.0)), per_hour(Limit(9, 86400.0))
    (15000, 1200000, 9)
    """
    if limit.period >= HOUR:
        return limit.count
    return round(limit.count * HOUR / limit.period)


@dataclass(frozen=True)
class Tally:
    """One pass over a job's verdicts: each verdict's count, and the worst domains."""

    verdicts: dict[str, int]
    undeliverable_domains: list[DomainCount]
    catch_all_domains: list[DomainCount]


def tally(verdicts: Iterable[tuple[str, str, bool | None]], top: int = TOP_DOMAINS) -> Tally:
    """Count the job's unique addresses by verdict, and find the domains with the most
    undeliverable and the most catch-all ones (each email is in one batch of a job, so each
    comes once; only per-domain counters are held, never the emails).

    >>> t = tally([("a@x.io", "undeliverable", False), ("b@x.io", "deliverable", True),
    ...            ("c@y.io", "undeliverable", True)])
    >>> t.verdicts, [(d.domain, d.count, d.addresses) for d in t.undeliverable_domains]
    ({'deliverable': 1, 'undeliverable': 2}, [('x.io', 1, 2), ('y.io', 1, 1)])
    >>> [d.domain for d in t.catch_all_domains]
    ['x.io', 'y.io']
    """
    results: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    undeliverable: collections.Counter[str] = collections.Counter()
    catch_all: collections.Counter[str] = collections.Counter()
    for email, result, is_catch_all in verdicts:
        results[result] += 1
        domain = email.rpartition("@")[2]
        total[domain] += 1
        if result == "undeliverable":
            undeliverable[domain] += 1
        if is_catch_all:
            catch_all[domain] += 1

    def ranked(counts: collections.Counter[str]) -> list[DomainCount]:
        # Ties go alphabetically, so the same job always gives the same table.
        best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [DomainCount(domain, count, total[domain]) for domain, count in best]

    return Tally(dict(sorted(results.items())), ranked(undeliverable), ranked(catch_all))


def _invalid_note(summary: dict[str, Any]) -> str:
    """Why the invalid rows cost nothing: never sent, or (some of them) refused by the API.

    >>> _invalid_note({"invalid": 3, "refused": 2})
    'never charged: 2 refused by the API'
    """
    refused = int(summary.get("refused") or 0)
    return f"never charged: {refused:,} refused by the API" if refused else "never sent"


def credit_figures(summary: dict[str, Any]) -> list[Figure]:
    """Where the credits went, as the summary counts it: bought, then what cost nothing."""
    bought = (
        ("simulated validations", "made up by the built-in fake: no credit spent")
        if summary.get("simulated")
        else ("bought", "credits spent this run")
    )
    figures = [
        Figure("credits_spent", bought[0], int(summary["credits_spent"]), bought[1]),
        Figure("cached", "cached", int(summary["cached"]), "verdicts reused: free"),
        Figure("invalid", "invalid syntax", int(summary["invalid"]), _invalid_note(summary)),
        Figure("blank", "blank", int(summary["blank"]), "no email: never sent"),
        Figure("duplicates", "duplicates", int(summary["duplicates"]), "repeat rows: paid once"),
    ]
    if summary.get("remaining"):
        figures.append(
            Figure("remaining", "still to validate", int(summary["remaining"]), "next run")
        )
    if summary.get("failed"):
        figures.append(Figure("failed", "failed", int(summary["failed"]), "no verdict given"))
    if summary.get("possible_double_charges"):
        figures.append(
            Figure(
                "possible_double_charges",
                "possible double charges",
                int(summary["possible_double_charges"]),
                "a POST resent after its answer was lost",
            )
        )
    return figures


def progress_figures(progress: Progress) -> list[Figure]:
    """What the store alone says when no run of the job has ended yet."""
    return [
        Figure("cached", "cached", progress.cached, "verdicts reused: free"),
        Figure(
            "validated",
            "validated through the API",
            progress.resolved - progress.cached,
            "so far",
        ),
        Figure("pending", "still to validate", progress.pending, "next run"),
    ]


def report_data(
    job: Job,
    summary: dict[str, Any] | None,
    batches: Sequence[Batch],
    verdicts: Iterable[tuple[str, str, bool | None]],
    *,
    state: str | None = None,
    usage_limit: Limit | None = None,
    progress: Progress | None = None,
    now: float | None = None,
) -> ReportData:
    """The report's figures: the summary's where there is one, the rest from the store.

    Without a summary (no run of the job has ended), the verdicts are counted per unique
    email from `verdicts`, and the credits from `progress`.
    """
    counted = tally(verdicts)
    if summary is not None:
        verdict_counts = {str(k): int(v) for k, v in summary["verdicts"].items()}
        unit, credits = "rows", credit_figures(summary)
    else:
        verdict_counts, unit = counted.verdicts, "unique emails"
        credits = progress_figures(progress) if progress is not None else []
    return ReportData(
        job=job.id,
        state=state or job.state,
        input=str(summary["input"]) if summary else job.input_path,
        email_column=job.email_column,
        output=str(summary["output"]) if summary else job.output_path,
        summary=summary,
        verdicts=verdict_counts,
        verdict_unit=unit,
        credits=credits,
        undeliverable_domains=counted.undeliverable_domains,
        catch_all_domains=counted.catch_all_domains,
        hours=hourly(batches),
        usage_limit=usage_limit or usage_limit_of(summary or {}) or usage_limit_of(job.stats),
        generated_at=time.time() if now is None else now,
        warnings=[str(w) for w in (summary or {}).get("warnings", [])],
    )


def load_report_data(
    state_dir: Where,
    job_id: str,
    *,
    summary: dict[str, Any] | None = None,
    state: str | None = None,
    usage_limit: Limit | None = None,
) -> ReportData:
    """Read the job's report figures from the store; `summary` overrides the recorded one
    (a run reports on itself before it records its outcome)."""
    with open_store(state_dir) as store:
        job = find_job(store, job_id)
        return report_data(
            job,
            summary if summary is not None else summary_of(job.stats),
            store.batches(job.id),
            store.job_verdicts(job.id),
            state=state,
            usage_limit=usage_limit,
            progress=store.progress(job.id),
        )

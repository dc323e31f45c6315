"""Section 2, quota efficiency: a quota-bound job with compressed windows against the fake.

12,000 unique emails at 1000 emails / 2 s and 60 requests / 5 s (the same limits on both
sides): the best any client can do is one full batch per window, so the last submission
comes (12 - 1) x 2 s = 22 s after the first. The figures say how close the real CLI gets,
and whether it ever overstepped a window to get there.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from ample_batch.jobs.plan import chunk_size_for
from ample_batch.limits import parse_limit
from ample_batch.quota.ideal import ideal_last_submission

from .common import DATA, Section, Table, fmt_seconds, last_line
from .fakeapi import (
    FakeThread,
    fresh_dir,
    leads_with_unique,
    run_validate,
    traceback_in,
    validate_command,
)

UNIQUE = 12_000
USAGE = "1000/2s"
RATE = "60/5s"


def run(log: Callable[[str], None]) -> Section:
    section = Section("Quota efficiency")
    usage, rate = parse_limit(USAGE), parse_limit(RATE)
    src = DATA / f"quota-{UNIQUE}.csv"
    rows = leads_with_unique(src, UNIQUE, seed=2)
    state = fresh_dir("quota-state")
    out, summary_path = state / "out.csv", state / "summary.json"
    log(f"quota: {UNIQUE:,} unique emails at --usage-limit {USAGE} --rate-limit {RATE}")
    with FakeThread(usage_limit=usage, rate_limit=rate) as fake:
        started = time.monotonic()
        command = validate_command(
            src, out, state, fake.url, summary_path, "--usage-limit", USAGE, "--rate-limit", RATE
        )
        proc = run_validate(command)
        elapsed = time.monotonic() - started
        summary = fake.summary()
        posts = [r.time for r in fake.api.log if r.method == "POST" and r.status == 202]
    if proc.returncode != 0 or not posts:
        section.unavailable = f"validate exited {proc.returncode}: {last_line(proc.stderr)}"
        return section
    tool = json.loads(summary_path.read_text())
    unique = int(tool["unique_emails"])
    chunk = chunk_size_for(None, usage)
    ideal = ideal_last_submission(unique, usage, chunk)
    last = posts[-1] - posts[0]
    table = Table(
        f"{unique:,} unique emails ({rows:,} rows), --usage-limit {USAGE} --rate-limit {RATE}",
        ["measure", "value", "limit / ideal"],
    )
    table.rows += [
        [
            "last submission after the first",
            fmt_seconds(last),
            f"{fmt_seconds(ideal)} ideal: {100 * last / ideal:.0f}%" if ideal else "-",
        ],
        ["submissions (POSTs accepted)", f"{len(posts):,}", f"{math.ceil(unique / chunk)}"],
        [
            "peak emails in any 2 s window",
            f"{summary.peak_emails_in_window:,}",
            f"{usage.count:,} ({100 * summary.peak_emails_in_window / usage.count:.0f}%)",
        ],
        [
            "peak requests in any 5 s window",
            f"{summary.peak_requests_in_window:,}",
            f"{rate.count:,} ({100 * summary.peak_requests_in_window / rate.count:.0f}%)",
        ],
        [
            "requests per 1,000 emails",
            f"{1000 * summary.requests / unique:.1f}",
            f"{summary.requests:,} requests in all",
        ],
        ["early polls", f"{summary.early_polls:,}", "0"],
        [
            "429s from the limits (rate / usage)",
            f"{summary.rate_limited} / {summary.usage_limited}",
            "0 / 0",
        ],
        [
            "emails charged (of them twice)",
            f"{summary.credits_spent:,} ({summary.emails_charged_twice:,})",
            f"{unique:,} (0)",
        ],
        ["whole run, process start to exit", fmt_seconds(elapsed), "-"],
    ]
    section.tables.append(table)
    section.notes.append(
        "The ideal schedule (quota/ideal.py, the one estimate quotes): as many full batches as"
        " a rolling window holds, the first at once. Limits are enforced by the fake too (a 429"
        " would count above)."
    )
    if traceback_in(proc.stdout, proc.stderr):
        section.notes.append("A traceback was printed by `validate`.")
    return section

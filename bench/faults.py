"""Section 4, the fault matrix: one job with every fault switch of the fake turned on.

8% 5xx, 3% dropped connections, 5% spurious 429s, 15% of validations ending in `error`,
results echoed in upper case and 20 ms of latency on every response. A sound client still
gives every valid row its verdict (or `failed` after its retry budget), keeps the limits,
never polls early and prints no traceback.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

from ample_batch.limits import parse_limit

from .common import DATA, Section, Table, fmt_any, fmt_seconds, last_line
from .fakeapi import (
    FakeThread,
    fresh_dir,
    leads_with_unique,
    run_validate,
    traceback_in,
    validate_command,
)

UNIQUE = 20_000
USAGE, RATE, CHUNK = "5000/1s", "100/1s", "500"
FAULTS = {
    "fail_5xx": 0.08,
    "drop": 0.03,
    "spurious_429": 0.05,
    "batch_error": 0.15,
    "upper_case_results": True,
    "latency": 0.02,
}
API_VERDICTS = {"deliverable", "risky", "unknown", "undeliverable"}
MAX_RUNS = 5


def run(log: Callable[[str], None]) -> Section:
    section = Section("Fault matrix")
    usage, rate = parse_limit(USAGE), parse_limit(RATE)
    src = DATA / f"faults-{UNIQUE}.csv"
    rows = leads_with_unique(src, UNIQUE, seed=5)
    work = fresh_dir("faults")
    codes: list[int] = []
    texts: list[str] = []
    log(f"faults: {UNIQUE:,} unique emails with {', '.join(FAULTS)}")
    with FakeThread(usage_limit=usage, rate_limit=rate, retry_after=0.2, **FAULTS) as fake:
        command = validate_command(
            src,
            work / "out.csv",
            work / "state",
            fake.url,
            work / "summary.json",
            "--usage-limit",
            USAGE,
            "--rate-limit",
            RATE,
            "--chunk-size",
            CHUNK,
        )
        started = time.monotonic()
        # One run is the test; a 75 (stopped early, resume) is followed up and reported.
        for _ in range(MAX_RUNS):
            proc = run_validate(command)
            codes.append(proc.returncode)
            texts.append(proc.stdout + proc.stderr)
            if proc.returncode != 75:
                break
        elapsed = time.monotonic() - started
        summary = fake.summary()
        errored = sum(v.final == "error" for v in fake.api.state.validations.values())
    if not (work / "summary.json").exists():
        section.unavailable = f"validate exited {codes[-1]}: {last_line(texts[-1])}"
        return section
    tool = json.loads((work / "summary.json").read_text())
    verdicts: dict[str, int] = tool.get("verdicts", {})
    answered = sum(n for name, n in verdicts.items() if name in API_VERDICTS)
    flags = summary.requests_by_flag
    table = Table(
        f"{UNIQUE:,} unique emails ({rows:,} rows), every fault on",
        ["measure", "value", "target"],
    )
    table.rows += [
        ["exit codes", " ".join(map(str, codes)), "0"],
        [
            "rows with an API verdict",
            f"{answered:,}",
            f"{tool['rows'] - tool['blank'] - tool['invalid']:,} valid rows",
        ],
        ["rows `failed`", f"{verdicts.get('failed', 0):,}", "0 (only after retries)"],
        ["rows `pending`", f"{verdicts.get('pending', 0):,}", "0"],
        ["verdicts equal to the fake's", _agreement(work / "out.csv"), "all"],
        [
            "faults injected (5xx / dropped / spurious 429)",
            " / ".join(str(flags.get(f, 0)) for f in ("fail_5xx", "dropped", "spurious_429")),
            "-",
        ],
        ["requests in all", f"{summary.requests:,}", "-"],
        ["validations created (ended in error)", f"{summary.validations:,} ({errored})", "-"],
        [
            "peak emails / requests in a window",
            f"{summary.peak_emails_in_window:,} / {summary.peak_requests_in_window:,}",
            f"≤ {usage.count:,} / ≤ {rate.count:,}",
        ],
        [
            "429s from the limits (rate / usage)",
            f"{summary.rate_limited} / {summary.usage_limited}",
            "0 / 0",
        ],
        ["early polls", f"{summary.early_polls:,}", "0"],
        [
            "emails charged (of them twice)",
            f"{summary.credits_spent:,} ({summary.emails_charged_twice:,})",
            f"{UNIQUE:,} (0)",
        ],
        ["possible double charges (tool)", fmt_any(tool.get("possible_double_charges", "?")), "0"],
        ["elapsed", fmt_seconds(elapsed), "-"],
        ["traceback printed", "yes" if traceback_in(*texts) else "no", "no"],
    ]
    section.tables.append(table)
    section.notes.append(
        f"--usage-limit {USAGE} --rate-limit {RATE} --chunk-size {CHUNK}; the fake enforces"
        " the same limits. A validation that ends in `error` keeps (and charges) the results of"
        " its processed half; the client must submit the other half again."
    )
    return section


def _agreement(output: Path) -> str:
    """How many rows carrying an API verdict match `verdict_for` on their own email."""
    if not output.exists():
        return "no output"
    from ample_batch.fake.config import verdict_for

    checked = agree = 0
    with output.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if row["email_result"] in API_VERDICTS:
                checked += 1
                verdict = (row["email_result"], row["email_catch_all"] == "true")
                agree += verdict_for(row["Email"]) == verdict
    return f"{agree:,} of {checked:,}"

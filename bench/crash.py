"""Section 3, the crash loop: SIGKILL `validate` ten times across one job, resume each time.

Each kill is aimed at a stage (scanning, submitting, polling, paging, writing) and fired a
seeded-random moment after that stage is seen: the CLI's own stage lines on stderr, or the
fake's request log for the API stages. What matters afterwards: the output equals an
uninterrupted run's byte for byte, and no email was paid for twice.
"""

from __future__ import annotations

import filecmp
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ample_batch.limits import parse_limit

from .common import DATA, ROOT, Section, Table, fmt_any, fmt_seconds, last_line
from .fakeapi import (
    FakeThread,
    fresh_dir,
    leads_with_unique,
    run_validate,
    stage_of,
    traceback_in,
    validate_command,
    validate_env,
)

UNIQUE = 40_000
USAGE, RATE = "5000/1s", "200/1s"
FAKE = {"emails_per_second": 20_000.0, "retry_after": 0.2}
# API stages first: once every result is fetched, only scanning and writing are left to hit.
AIMS = ["scanning", "submitting", "polling", "paging", "submitting", "paging", "polling"]
AIMS += ["scanning", "writing", "writing"]
SEED = 4
TRIES = 3
"""Runs allowed per aim when the run keeps ending before the aimed stage is hit."""
PATIENCE = 300.0
"""Seconds any one `validate` process may take before the harness gives up on it."""
# The CLI's stage lines (report.py) mapped to the stage names used here.
CLI_STAGES = {"checking the API key": "starting", "scanning": "scanning"}
CLI_STAGES |= {"validating": "validating", "writing": "writing"}


@dataclass
class Attempt:
    """One `validate` process, watched line by line."""

    proc: subprocess.Popen[str]
    started: float
    first_request: int
    stages: dict[str, float] = field(default_factory=dict)
    stage: str = "starting"
    text: list[str] = field(default_factory=list)

    def watch(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.text.append(line)
            for marker, stage in CLI_STAGES.items():
                if line.rstrip().endswith(marker) or f" {marker} · " in line:
                    self.stage = stage
                    self.stages.setdefault(stage, time.monotonic() - self.started)


def start(command: list[str], fake: FakeThread) -> Attempt:
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=validate_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    attempt = Attempt(proc, time.monotonic(), fake.requests())
    threading.Thread(target=attempt.watch, daemon=True).start()
    return attempt


def finish(attempt: Attempt) -> int:
    """Wait for an attempt to end by itself, within PATIENCE."""
    try:
        return attempt.proc.wait(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        attempt.proc.kill()
        attempt.proc.wait()
        raise


def landed(attempt: Attempt, fake: FakeThread) -> str:
    """The stage the process was in when it was killed."""
    if attempt.stage != "validating":
        return attempt.stage
    mine = fake.api.log[attempt.first_request :]
    return stage_of(mine[-1].method, mine[-1].path) if mine else "planning"


def kill_at(
    aim: str, attempt: Attempt, fake: FakeThread, rng: random.Random, durations: dict[str, float]
) -> str | None:
    """Wait for `aim`, then SIGKILL; the landed stage, or None if the run ended first."""
    pages_wanted = rng.randint(1, 40)
    # A run that never reaches the aimed stage (say, stuck) is killed wherever it is.
    give_up = time.monotonic() + PATIENCE
    while attempt.proc.poll() is None and time.monotonic() < give_up:
        if attempt.stage == "writing" or (aim == "scanning" and attempt.stage == "scanning"):
            # Somewhere inside the stage, as long as it lasted in the uninterrupted run (writing
            # is timed up to the process exit, so only its first part is aimed at).
            share = 0.6 if attempt.stage == "writing" else 0.9
            time.sleep(rng.uniform(0.0, share * durations.get(attempt.stage, 0.2)))
            break
        seen = [stage_of(r.method, r.path) for r in fake.api.log[attempt.first_request :]]
        if seen.count(aim) >= (pages_wanted if aim == "paging" else 1):
            time.sleep(rng.uniform(0.0, 0.03))
            break
        time.sleep(0.005)
    if attempt.proc.poll() is not None:
        return None
    where = landed(attempt, fake)
    os.kill(attempt.proc.pid, signal.SIGKILL)
    attempt.proc.wait()
    return where


def run(log: Callable[[str], None]) -> Section:
    section = Section("Crash loop")
    usage, rate = parse_limit(USAGE), parse_limit(RATE)
    src = DATA / f"crash-{UNIQUE}.csv"
    rows = leads_with_unique(src, UNIQUE, seed=3)
    fake_config = {"usage_limit": usage, "rate_limit": rate, **FAKE}
    options = ("--usage-limit", USAGE, "--rate-limit", RATE)

    log("crash: an uninterrupted run for reference")
    clean = fresh_dir("crash-clean")
    with FakeThread(**fake_config) as fake:
        command = validate_command(
            src, clean / "out.csv", clean / "state", fake.url, clean / "summary.json", *options
        )
        attempt = start(command, fake)
        code = finish(attempt)
        ended = time.monotonic() - attempt.started
        clean_summary = fake.summary()
    if code != 0:
        section.unavailable = (
            f"the uninterrupted run exited {code}: {last_line(''.join(attempt.text))}"
        )
        return section
    stages = {**attempt.stages, "end": ended}
    order = sorted(stages, key=stages.__getitem__)
    durations = {a: stages[b] - stages[a] for a, b in itertools.pairwise(order)}

    rng = random.Random(SEED)
    work = fresh_dir("crash-killed")
    kills = Table(
        "Kills", ["#", "aimed at", "landed in", "killed after", "requests this run"], left=3
    )
    landed_in: Counter[str] = Counter()
    codes: list[int] = []
    texts: list[str] = []
    with FakeThread(**fake_config) as fake:
        command = validate_command(
            src, work / "out.csv", work / "state", fake.url, work / "summary.json", *options
        )
        for number, aim in enumerate(AIMS, start=1):
            log(f"crash: kill {number}/{len(AIMS)}, aimed at {aim}")
            for _ in range(TRIES):
                attempt = start(command, fake)
                where = kill_at(aim, attempt, fake, rng, durations)
                texts.append("".join(attempt.text))
                # Every run scans and writes, so a run that ended first is simply run again.
                if where is not None or aim not in ("scanning", "writing"):
                    break
                codes.append(attempt.proc.returncode)
            if where is None:
                codes.append(attempt.proc.returncode)
                kills.rows.append([str(number), aim, f"(ended first: exit {codes[-1]})", "-", "-"])
                continue
            landed_in[where] += 1
            kills.rows.append(
                [
                    str(number),
                    aim,
                    where,
                    fmt_seconds(time.monotonic() - attempt.started),
                    f"{fake.requests() - attempt.first_request:,}",
                ]
            )
        for _ in range(5):
            log("crash: resuming until exit 0")
            proc = run_validate(command)
            codes.append(proc.returncode)
            texts.append(proc.stdout + proc.stderr)
            if proc.returncode == 0:
                break
        summary = fake.summary()
    section.tables.append(kills)
    section.tables.append(_results(landed_in, codes, clean, work, clean_summary, summary, texts))
    section.notes.append(
        f"{UNIQUE:,} unique emails ({rows:,} rows) at --usage-limit {USAGE} --rate-limit {RATE};"
        f" the uninterrupted run took {fmt_seconds(ended)}. Kill moments: random.Random({SEED})."
    )
    section.notes.append(
        "The tool's figure is `possible_double_charges` in the final run's summary JSON (a killed"
        " run writes none): batches whose POST may have been accepted before a kill, re-sent"
        " because the API can neither list validations nor take an idempotency key."
    )
    return section


def _results(
    landed_in: Counter[str],
    codes: list[int],
    clean: Path,
    work: Path,
    clean_summary: object,
    summary: object,
    texts: list[str],
) -> Table:
    table = Table("Crash loop results", ["measure", "value", "target"])
    done = bool(codes) and codes[-1] == 0
    same = done and filecmp.cmp(clean / "out.csv", work / "out.csv", shallow=False)
    tool = json.loads((work / "summary.json").read_text()) if done else {}
    stray = sorted(
        p.name for p in work.iterdir() if p.name not in {"out.csv", "summary.json", "state"}
    )
    charged = getattr(summary, "credits_spent", 0)
    table.rows += [
        ["kills, by stage landed in", ", ".join(f"{k} {v}" for k, v in landed_in.items()), "10"],
        ["exit codes after the kills", " ".join(map(str, codes)) or "-", "… 0"],
        ["final output byte-equal to the uninterrupted run's", "yes" if same else "NO", "yes"],
        ["emails charged twice (fake)", f"{getattr(summary, 'emails_charged_twice', '?'):,}", "0"],
        [
            "possible double charges (tool's summary JSON)",
            fmt_any(tool.get("possible_double_charges", "?")),
            "0",
        ],
        [
            "credits spent vs uninterrupted run",
            f"{charged:,} vs {getattr(clean_summary, 'credits_spent', 0):,}",
            "equal",
        ],
        ["early polls", f"{getattr(summary, 'early_polls', '?')}", "0"],
        [
            "429s from the limits (rate / usage)",
            f"{getattr(summary, 'rate_limited', '?')} / {getattr(summary, 'usage_limited', '?')}",
            "0 / 0",
        ],
        ["tracebacks printed", "yes" if traceback_in(*texts) else "none", "none"],
        ["stray files beside the output", ", ".join(stray) or "none", "none"],
    ]
    return table

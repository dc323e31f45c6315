"""Section 6, state operations: a 1M-email job's work in the job store, SQLite beside PostgreSQL.

Three phases, each in a process of its own (bench/state_tasks.py) so its time and peak RSS
are its own: plan the job (1,000,000 emails in batches of 10,000), record its verdicts in
10,000 pages, read every verdict back as a run does before writing its output.

PostgreSQL is $AMPLE_BATCH_BENCH_STATE_URL when set (its `bench_state` schema is dropped
first), else a throwaway local server started as the test suite starts its own
(tests/postgres_server.py: fsync off, so the figures are the store's work, not the disk's).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .common import ROOT, Section, Table, fmt_mb, fmt_seconds, python_module, run_measured
from .fakeapi import fresh_dir
from .state_tasks import SCHEMA

EMAILS, PAGES = 1_000_000, 10_000
QUICK = (100_000, 1_000)
PHASES = {
    "plan": "plan the job (COPY / executemany)",
    "pages": "record every page",
    "read": "read all verdicts back",
}


@contextmanager
def postgres_url(log: Callable[[str], None]) -> Iterator[str]:
    """The bench's PostgreSQL: the one named in the environment, or one started for it."""
    given = os.environ.get("AMPLE_BATCH_BENCH_STATE_URL")
    if given:
        import psycopg

        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        yield given
        return
    sys.path.insert(0, str(ROOT / "tests"))
    import postgres_server

    log("state: starting a throwaway PostgreSQL server")
    server = postgres_server.start()
    try:
        yield server.url()
    finally:
        server.stop()


def run(log: Callable[[str], None], *, quick: bool = False) -> Section:
    emails, pages = QUICK if quick else (EMAILS, PAGES)
    section = Section("State operations")
    table = Table(
        f"A job of {emails:,} emails: plan, {pages:,} pages, read back",
        ["phase", "SQLite", "SQLite peak RSS", "PostgreSQL", "PostgreSQL peak RSS"],
    )
    figures: dict[str, dict[str, list[str]]] = {phase: {} for phase in PHASES}
    with postgres_url(log) as url:
        targets = {"sqlite": str(fresh_dir("state-sqlite")), "postgres": url}
        for backend, target in targets.items():
            for phase in PHASES:
                log(f"state: {backend} {phase} ({emails:,} emails)")
                measured = run_measured(
                    python_module("bench.state_tasks", phase, target, emails, pages)
                )
                if measured.error:
                    figures[phase][backend] = [measured.error, "-"]
                    continue
                seconds = float(measured.result["seconds"])
                figures[phase][backend] = [fmt_seconds(seconds), fmt_mb(measured.peak_rss_mb)]
    for phase, label in PHASES.items():
        cells = figures[phase]
        table.rows.append([label, *cells.get("sqlite", ["-", "-"]), *cells["postgres"]])
    section.tables.append(table)
    section.notes += [
        "Each phase runs in its own process on the store the previous one left; peak RSS is"
        " that process's own (VmHWM), the emails generated for planning included.",
        "PostgreSQL on the same machine (a local TCP connection); over a network each page's"
        " transaction adds a round trip or three.",
        "Pages are 100 verdicts each: one transaction writes them to the batch and the cache.",
    ]
    return section

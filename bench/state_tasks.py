"""One measured job store phase per process: `python -m bench.state_tasks PHASE STORE EMAILS PAGES`.

STORE is a state dir (the SQLite store) or a `postgresql://` URL (the PostgreSQL store, in
the `bench_state` schema). Phases, run in this order on one store:

- `plan`: plan a job of EMAILS new emails in batches of 10,000 (`store.plan`).
- `pages`: move every batch to `fetching` (not timed), then record all its verdicts in
  PAGES pages (`store.record_page`: the batch's emails and the cache in one transaction).
- `read`: read every verdict back as a run does before writing its output
  (`Verdicts.from_rows(store.job_verdicts(...))`).

Each prints one JSON line: the phase's seconds and the process's own peak RSS (`VmHWM`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ample_batch.jobs.protocol import JobStore

from .io_tasks import peak_rss_mb

CHUNK = 10_000
SCHEMA = "bench_state"


def open_store(target: str) -> JobStore:
    if target.startswith("postgresql://"):
        from ample_batch.jobs.postgres.store import PgStore

        return PgStore(target, schema=SCHEMA)
    from pathlib import Path

    from ample_batch.jobs.sqlite.store import Store

    return Store(Path(target))


def emails(count: int) -> list[str]:
    return [f"lead{i:07d}@company{i % 97}.com" for i in range(count)]


def run_phase(phase: str, store: JobStore, count: int, pages: int) -> dict[str, Any]:
    job = store.open_job(
        input_path="/bench/leads.csv",
        fingerprint="bench-" + str(count),
        email_column="email",
        output_path=None,
        cache_ttl=86400.0,
    )
    if phase == "plan":
        new = emails(count)
        started = time.perf_counter()
        store.plan(job.id, cached=[], new=new, chunk_size=CHUNK)
        return {"seconds": time.perf_counter() - started, "batches": len(store.batches(job.id))}
    if phase == "pages":
        batches = store.batches(job.id)
        work = []
        for batch in batches:
            store.mark_submitting(batch.id)
            store.mark_running(batch.id, remote_id=f"r{batch.id}", remote_href=f"/v/{batch.id}")
            store.mark_fetching(batch.id, first_href=f"/v/{batch.id}/1", remote_status="done")
            work.append((batch.id, store.batch_emails(batch.id)))
        per_batch = max(1, pages // len(work))
        recorded = 0
        started = time.perf_counter()
        for batch_id, addresses in work:
            size = -(-len(addresses) // per_batch)
            for start in range(0, len(addresses), size):
                page = [(e, "deliverable", False) for e in addresses[start : start + size]]
                store.record_page(batch_id, page, next_href=None)
                recorded += 1
            store.finish(batch_id)
        return {"seconds": time.perf_counter() - started, "pages": recorded}
    if phase == "read":
        from ample_batch.files.verdicts import Verdicts

        started = time.perf_counter()
        verdicts = Verdicts.from_rows(store.job_verdicts(job.id), normalised=True)
        return {"seconds": time.perf_counter() - started, "verdicts": len(verdicts)}
    raise SystemExit(f"unknown phase {phase!r}")


def main(argv: list[str]) -> None:
    phase, target, count, pages = argv
    with open_store(target) as store:
        result = run_phase(phase, store, int(count), int(pages))
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])

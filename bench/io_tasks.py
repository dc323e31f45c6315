"""One measured I/O task per process: `python -m bench.io_tasks TOOL FORMAT INPUT OUTPUT VERDICTS`.

Each task loads the verdict table first (not timed: in a real run it comes out of the job
store), then times only the work on the lead list, and prints one JSON line with the process's
own peak RSS (`VmHWM`), so every figure belongs to one tool on one file.

Tools: `ample-scan`, `ample` (scan + join + write), `pandas`, `duckdb`, `polars`.
The baselines do what a careful analyst would do by hand: every cell as text, the email
trimmed and lower-cased, a left join on the verdict table keeping input order, the two
verdict columns appended.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def ample_scan(fmt: str, src: Path, out: Path, verdicts: Path) -> Result:
    from ample_batch.files import inspect
    from ample_batch.files import scan as scanning

    started = time.perf_counter()
    spec = inspect.inspect_input(src)
    scan = scanning.scan(spec)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": scan.rows, "unique": len(scan.unique)}


def ample_enrich(fmt: str, src: Path, out: Path, verdicts: Path) -> Result:
    """Scan, then build the verdicts from a job store (as a run does once the API has
    answered; not timed), then join and write: the order, and so the peak, of a real run."""
    from ample_batch.files import inspect, join
    from ample_batch.files import scan as scanning

    started = time.perf_counter()
    spec = inspect.inspect_input(src)
    scanned = scanning.scan(spec)
    spec, rows = scanned.spec, scanned.rows  # a run keeps the counts only, once planned
    del scanned  # as `run` drops the unique emails (`scan.unique[:0]`) once they are planned
    scan_seconds = time.perf_counter() - started

    t0 = time.perf_counter()
    lookup = join.Verdicts.from_rows(_job_verdicts(verdicts), normalised=True)
    verdict_seconds = time.perf_counter() - t0
    verdicts_rss_mb = peak_rss_mb()

    joined = time.perf_counter()
    join.enrich_file(spec, lookup, out, missing="pending")
    join_seconds = time.perf_counter() - joined
    return {
        "seconds": scan_seconds + join_seconds,
        "scan_seconds": scan_seconds,
        "join_write_seconds": join_seconds,
        "verdicts_seconds": verdict_seconds,
        "verdicts_rss_mb": verdicts_rss_mb,
        "rows": rows,
        "via": "join.enrich_file",
    }


def _job_verdicts(verdicts: Path) -> Iterator[tuple[str, str, bool | None]]:
    """Every verdict of the one job in the store beside the verdict table (see bench.io)."""
    from ample_batch.jobs.sqlite.store import Store

    from .io import verdict_store

    with Store(verdict_store(verdicts)) as store:
        (job,) = store.jobs()
        yield from store.job_verdicts(job.id)


def pandas_task(fmt: str, src: Path, out: Path, verdicts: Path) -> Result:
    import pandas as pd

    table = pd.read_parquet(verdicts)
    started = time.perf_counter()
    if fmt == "csv":
        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    else:
        frame = pd.read_parquet(src)
    key = frame["Email"].str.strip().str.lower()
    merged = frame.assign(_key=key).merge(table, how="left", left_on="_key", right_on="email")
    merged = merged.drop(columns=["_key", "email"])
    merged["email_result"] = merged["email_result"].fillna("pending")
    merged["email_catch_all"] = merged["email_catch_all"].fillna("")
    if fmt == "csv":
        merged.to_csv(out, index=False)
    else:
        merged.to_parquet(out, index=False)
    return {"seconds": time.perf_counter() - started, "rows": len(merged)}


def duckdb_task(fmt: str, src: Path, out: Path, verdicts: Path) -> Result:
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE TABLE v AS SELECT * FROM read_parquet('{verdicts}')")
    started = time.perf_counter()
    if fmt == "csv":
        source = (
            f"SELECT *, row_number() OVER () AS _rn FROM read_csv('{src}', all_varchar = true,"
            " header = true, quote = '\"', escape = '\"', strict_mode = false)"
        )
        sink = "FORMAT csv, HEADER true"
    else:
        source = (
            "SELECT * EXCLUDE (file_row_number), file_row_number AS _rn"
            f" FROM read_parquet('{src}', file_row_number = true)"
        )
        sink = "FORMAT parquet"
    # ORDER BY the row number: a hash join does not keep input order on its own.
    con.execute(
        f"COPY (SELECT l.* EXCLUDE (_rn), coalesce(v.email_result, 'pending') AS email_result,"
        f" coalesce(v.email_catch_all, '') AS email_catch_all FROM ({source}) l"
        f" LEFT JOIN v ON lower(trim(l.\"Email\")) = v.email ORDER BY l._rn) TO '{out}' ({sink})"
    )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": _count_rows(con, fmt, out)}


def polars_task(fmt: str, src: Path, out: Path, verdicts: Path) -> Result:
    import polars as pl

    table = pl.read_parquet(verdicts).lazy()
    started = time.perf_counter()
    if fmt == "csv":
        frame = pl.scan_csv(src, infer_schema=False, empty_string_is_null=False)
    else:
        frame = pl.scan_parquet(src)
    key = pl.col("Email").str.strip_chars().str.to_lowercase()
    joined = (
        frame.with_columns(_key=key)
        .join(table, how="left", left_on="_key", right_on="email", maintain_order="left")
        .drop("_key")
        .with_columns(
            pl.col("email_result").fill_null("pending"), pl.col("email_catch_all").fill_null("")
        )
    )
    if fmt == "csv":
        joined.sink_csv(out)
    else:
        joined.sink_parquet(out)
    seconds = time.perf_counter() - started
    rows = (pl.scan_csv(out, infer_schema=False) if fmt == "csv" else pl.scan_parquet(out)).select(
        pl.len()
    )
    return {"seconds": seconds, "rows": rows.collect().item()}


def _count_rows(con: Any, fmt: str, out: Path) -> int:
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    extra = ", all_varchar = true, strict_mode = false" if fmt == "csv" else ""
    return int(con.execute(f"SELECT count(*) FROM {reader}('{out}'{extra})").fetchone()[0])


TASKS: dict[str, Callable[[str, Path, Path, Path], Result]] = {
    "ample-scan": ample_scan,
    "ample": ample_enrich,
    "pandas": pandas_task,
    "duckdb": duckdb_task,
    "polars": polars_task,
}


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: `VmHWM` of its own address space.

    Not `getrusage` or the parent's `wait4`: Linux folds the address space a child was
    vforked from into its `ru_maxrss` at exec, so a child of a large parent (one that has just
    generated the data, say) reports at least the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # in kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(argv: list[str]) -> None:
    tool, fmt, src, out, verdicts = argv
    result = TASKS[tool](fmt, Path(src), Path(out), Path(verdicts))
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""`python -m bench` (`make bench`): measure ample-batch and write docs/benchmarks.md.

    python -m bench                       # everything: 1M and 5M rows, ~10 min on 2 cores
    python -m bench --quick               # 200k rows only, to try it out
    python -m bench --only e2e --rows 1000000   # one whole job end to end
    python -m bench --only quota,crash    # some sections
    python -m bench --rows 2000000 --output /tmp/bench.md

Sections: io (scan + join + write beside pandas, DuckDB, polars), quota (a quota-bound job
against the fake API), crash (SIGKILL ten times, resume), faults (every fault switch on),
e2e (whole `validate` jobs at --rows against `mock-server`: wall time and peak RSS per phase),
state (a 1M-email job's plan, pages and read-back in the SQLite and PostgreSQL stores).
A section that cannot run (a library piece missing or failing) is reported as unavailable
and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .common import ROOT, Section
from .page import now, render, write

SECTIONS = {
    "io": ("bench.io", "Local I/O"),
    "quota": ("bench.quota", "Quota efficiency"),
    "crash": ("bench.crash", "Crash loop"),
    "faults": ("bench.faults", "Fault matrix"),
    "e2e": ("bench.e2e", "End to end"),
    "state": ("bench.state", "State operations"),
}
QUICK_ROWS = [200_000]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        default="1000000,5000000",
        help="comma-separated row counts for the I/O and e2e sections (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="I/O at 200,000 rows only, state at 100,000 emails"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated sections to run (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="where the Markdown page goes (default: docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    try:
        args.rows = (
            QUICK_ROWS if args.quick else [int(n.replace("_", "")) for n in args.rows.split(",")]
        )
    except ValueError:
        parser.error(f"--rows takes comma-separated integers, not {args.rows!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started_at, started = now(), time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    sections: list[Section] = []
    for name in args.only:
        module_name, title = SECTIONS[name]
        log(f"section {name}")
        section = _run_section(module_name, title, args, log)
        sections.append(section)
        print(render_section(section), flush=True)

    command = "python -m bench" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    write(args.output, render(sections, command, started_at, time.monotonic() - started))
    log(f"wrote {args.output}")
    return 0


def _run_section(
    module_name: str, title: str, args: argparse.Namespace, log: Callable[[str], None]
) -> Section:
    """Run one section; any failure becomes "unavailable: <reason>" so the rest still runs."""
    try:
        module = importlib.import_module(module_name)
        if module_name == "bench.io":
            return module.run(args.rows, log)
        if module_name == "bench.e2e":
            return module.run(log, tuple(args.rows))
        if module_name == "bench.state":
            return module.run(log, quick=args.quick)
        return module.run(log)
    except Exception as exc:  # a missing or broken library piece must not stop the harness
        log("".join(traceback.format_exception(exc)).rstrip())
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return Section(title, unavailable=reason)


def render_section(section: Section) -> str:
    lines = ["", f"== {section.title} =="]
    if section.unavailable:
        lines.append(f"unavailable: {section.unavailable}")
        return "\n".join(lines)
    for table in section.tables:
        lines += ["", table.render()]
    lines += [""] + [f"- {note}" for note in section.notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

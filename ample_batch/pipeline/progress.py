"""`progress=True`: plain lines on stderr, which a terminal and a notebook cell both show.

    progress = LineProgress()                   # on stderr
    summary = validate(options, reporter=progress)
    progress.done(summary)

    >>> import io
    >>> out = io.StringIO()
    >>> LineProgress(out)(LiveStatus(stage="scanning"))
    >>> out.getvalue()
    'ample-batch: scanning\\n'

A line when the stage changes and, while validating, one every `every` seconds; no cursor
tricks, so a log file or a notebook's output reads the same as a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .summary import LiveStatus, Reporter, Summary


class LineProgress:
    """A reporter that prints what a run is doing, at most every `every` seconds."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._every = every
        self._clock = clock
        self._stage = ""
        self._last: float | None = None

    def __call__(self, status: LiveStatus) -> None:
        now = self._clock()
        due = self._last is None or now - self._last >= self._every
        if status.stage == self._stage and not (due and status.counters is not None):
            return
        self._stage, self._last = status.stage, now
        self._print(line(status))

    def done(self, summary: Summary) -> None:
        """The last line: what the run did and spent."""
        self._print(
            f"done · {summary.rows:,} rows, {summary.unique_emails:,} unique emails · "
            f"{summary.cached:,} from the cache · {summary.credits_spent:,} credits spent"
            + (" (simulated)" if summary.simulated else "")
        )

    def _print(self, text: str) -> None:
        # Looked up on each line: a notebook swaps sys.stderr per cell.
        print(f"ample-batch: {text}", file=self._stream or sys.stderr, flush=True)


def line(status: LiveStatus, *, waiting: str = "", quota: str = "") -> str:
    """`validating · 1,000 rows, 900 unique emails · 400/900 submitted, 300 validated`, with
    `waiting` after the stage and `quota` at the end when given."""
    parts = [status.stage, waiting]
    if status.rows:
        parts.append(f"{status.rows:,} rows, {status.unique:,} unique emails")
    if status.counters is not None:
        counters = status.counters
        parts.append(
            f"{counters.emails_submitted:,}/{status.to_submit:,} submitted, "
            f"{counters.emails_resolved:,} validated"
        )
    parts.append(quota)
    return " · ".join(part for part in parts if part)


def both(first: Reporter | None, second: Reporter | None) -> Reporter:
    """One reporter calling each given one."""
    reporters = [r for r in (first, second) if r is not None]

    def report(status: LiveStatus) -> None:
        for reporter in reporters:
            reporter(status)

    return report

"""The scan's distinct emails, collected with memory that follows unique emails, not rows."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

__all__ = ["PARTITIONS", "DistinctEmails"]


PARTITIONS = 8
"""The valid emails are split by hash into this many parts, each deduplicated alone: about the
same time as one pass, for a fraction of its transient memory."""


_PARTITION_SEED = 0x5EED


class DistinctEmails:
    """Normalised emails added batch by batch; `result()` gives each once, in no order."""

    def __init__(self) -> None:
        self._parts: list[list[pl.Series]] = [[] for _ in range(PARTITIONS)]
        self._held = 0
        self._limit = 8_000_000  # emails held before deduplicating what is held so far

    def add(self, emails: pl.Series) -> None:
        """Hold `emails` (a String series), each in the part its hash picks."""
        good = emails.to_frame("k")
        part = (pl.col("k").hash(seed=_PARTITION_SEED) % PARTITIONS).cast(pl.UInt32)
        groups = good.with_columns(part.alias("p")).partition_by(
            "p", as_dict=True, include_key=False
        )
        for (number,), group in groups.items():
            self._parts[number].append(group.to_series())
        self._held += len(good)
        if self._held > self._limit:
            self._parts = [[_unique(part)] for part in self._parts]
            self._held = sum(len(part[0]) for part in self._parts)
            self._limit = max(self._limit, 2 * self._held)

    def result(self) -> pa.StringArray:
        """The distinct emails of every part as one Arrow array, each part freed once
        converted."""
        chunks = []
        for i, part in enumerate(self._parts):
            unique = _unique(part)
            self._parts[i] = []
            # polars' own string views, cast once: its default export copies to large_string
            chunks.append(unique.to_arrow(compat_level=pl.CompatLevel.newest()).cast(pa.string()))
            del unique
        try:
            return pa.concat_arrays(chunks)
        except pa.ArrowInvalid:  # over 2 GiB of text
            return pa.concat_arrays([chunk.cast(pa.large_string()) for chunk in chunks])


def _unique(part: list[pl.Series]) -> pl.Series:
    # The lazy engine: faster than Series.unique, and than pyarrow's unique, which also
    # needed much more memory (docs/design-measurements.md).
    if not part:
        return pl.Series("k", [], pl.String)
    frames = [series.to_frame("k") for series in part]
    return pl.concat(frames).lazy().unique().collect().to_series()

"""The join stage: stream the input again and append each row's verdict.

    >>> from tempfile import TemporaryDirectory
    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.csv"))
    >>> verdicts = Verdicts.from_rows([("anakowalski0@icloud.com", "risky", True)])
    >>> with TemporaryDirectory() as tmp:
    ...     enrich_file(spec, verdicts, Path(tmp) / "leads.validated.csv").results
    {'invalid_syntax': 18, 'no_email': 43, 'pending': 1935, 'risky': 4}

Two columns are appended to every row, in order: `email_result` (`no_email` for a blank cell,
`invalid_syntax`, the API's verdict, or `missing` for a valid email without one) and
`email_catch_all` (`"true"`/`"false"`/`""` as text for CSV and XLSX input; a nullable boolean
for Parquet input, and in every Parquet output), and, when asked, a third with the address as
sent (`sent_column`). Only the documented vocabulary is ever written: an unknown result string
becomes `unknown`, so no cell we add can start a formula. `enrich_file(..., split=True)` also
writes one file per result beside the output in the same pass (`split`).

Each row's email is found in a `verdicts.VerdictLookup`, built once per file; the names
appended, and the check of a `sent_column` name, are in `appended`. The input is parsed by
pyarrow only, the same parser `scan` used, so both passes see the same rows and cells. The
figures behind this module's choices are in docs/design-measurements.md.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .appended import appended_columns, check_sent_column
from .output import check_output, output_kind, write_output
from .parquet import dictionary_encoded
from .spec import RESULT_COLUMN, InputSpec, SplitFile
from .split import Splitter, check_split_paths
from .stream import prefetch, record_batches, regroup, use_jemalloc
from .verdicts import VerdictLookup, Verdicts

# `Verdicts` stays importable from here: the README's file-stage example imports it with
# `enrich_file`, which takes one.
__all__ = [
    "MISSING",
    "Enriched",
    "Verdicts",
    "dictionaries_for",
    "enrich_batches",
    "enrich_file",
]


MISSING = ("pending", "failed", "unknown")
"""Allowed `missing=` values: what a valid email without a verdict shows."""


JOIN_BATCH_ROWS = 131_072
"""Rows per batch through the lookup and the writer: smaller batches paid a fixed cost per
batch that showed in the time, larger ones only added memory."""


def _check_missing(missing: str) -> None:
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {', '.join(MISSING)}, not {missing!r}")


def enrich_batches(
    spec: InputSpec,
    verdicts: Verdicts,
    *,
    missing: str = "pending",
    batch_rows: int = JOIN_BATCH_ROWS,
    dictionaries: Sequence[str] = (),
    sent_column: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Every input row, in order, with `email_result` and `email_catch_all` appended.

    `dictionaries` (Parquet input, see `parquet.dictionary_encoded`) are read as Arrow
    dictionaries, for a Parquet writer that takes them as they are. `sent_column` appends a
    third column of that name: the address as the API gets it (normalised: trimmed,
    lower-cased, `Name <addr>` and `mailto:` unwrapped) on every row whose email is valid,
    empty (null for Parquet input) on blank and invalid_syntax rows, which are never sent.

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.parquet"))
    >>> batch = next(enrich_batches(spec, Verdicts.from_rows([])))
    >>> batch.num_rows, batch.schema.names[-2:]
    (2000, ['email_result', 'email_catch_all'])
    """
    _check_missing(missing)
    use_jemalloc()
    text = spec.format != "parquet"

    def enriched(building: Future[VerdictLookup]) -> Iterator[pa.RecordBatch]:
        lookup: VerdictLookup | None = None
        source = record_batches(spec, batch_rows=batch_rows, dictionaries=dictionaries)
        for batch in regroup(prefetch(source), batch_rows):
            if lookup is None:
                lookup = building.result()
            appended = lookup.columns(
                batch.column(spec.email_index), missing, text=text, sent=sent_column is not None
            )
            for name, column in zip(appended_columns(sent_column), appended, strict=True):
                batch = batch.append_column(name, column)
            yield batch
        if lookup is None:  # no rows at all: bad verdicts are still an error
            building.result()

    # Three stages on their own threads: pyarrow parses, the lookup runs, the caller writes.
    # For Parquet the lookup is built on a fourth while the first batches are parsed. Not for
    # CSV: its parser's blocks and the build's temporaries together raised the peak, for no
    # time saved.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ample-batch-lookup") as pool:
        building = pool.submit(VerdictLookup, verdicts)
        if spec.format != "parquet":
            building.result()
        yield from prefetch(enriched(building))


def dictionaries_for(spec: InputSpec, output: Path) -> tuple[str, ...]:
    """The `dictionaries` for `enrich_batches` when writing `output`: the input's
    dictionary-encoded text columns from Parquet to Parquet, else none (the CSV and XLSX
    writers take plain text)."""
    return dictionary_encoded(spec) if output_kind(output) == "parquet" else ()


@dataclass(frozen=True, kw_only=True)
class Enriched:
    """What `enrich_file` wrote."""

    rows: int
    """Rows written: every input row."""
    results: dict[str, int]
    """Rows by their `email_result`, sorted by result (the run summary's `verdicts`)."""
    split: dict[str, SplitFile] = field(default_factory=dict)
    """With `split=True`: the file written for each `email_result` value, sorted by value."""


def enrich_file(
    spec: InputSpec,
    verdicts: Verdicts,
    output: Path,
    *,
    missing: str = "pending",
    rows: int | None = None,
    check: bool = True,
    sent_column: str | None = None,
    split: bool = False,
) -> Enriched:
    """Check `output`, then write every enriched row to it atomically, counting the results.

    `rows` (from `scan`) lets `check_output` refuse an XLSX that could not hold them.
    `check=False` is for a caller that checked before its paid work (the pipeline): a failure
    now must be `OutputUnwritten`, which says the verdicts are kept, not an `InputError`.
    `sent_column` appends the address as sent (see `enrich_batches`); `split` also writes one
    file per `email_result` value beside `output` in the same pass (see `split`), each
    replacing its target only once the output has, and removes the split files of values
    this output does not hold.

    >>> from tempfile import TemporaryDirectory
    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.parquet"))
    >>> with TemporaryDirectory() as tmp:
    ...     enrich_file(spec, Verdicts.from_rows([]), Path(tmp) / "out.parquet", missing="failed")
    Enriched(rows=2000, results={'failed': 1939, 'invalid_syntax': 18, 'no_email': 43}, split={})
    """
    _check_missing(missing)
    if check:
        check_output(spec, output, rows=rows)
        check_sent_column(spec, sent_column)
        if split:
            check_split_paths(spec, output)
    counts: collections.Counter[str] = collections.Counter()
    appended = appended_columns(sent_column)
    written_split: dict[str, SplitFile] = {}

    with contextlib.ExitStack() as stack:
        splitter = Splitter(spec, output, appended, stack) if split else None

        def counted(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                column = batch.column(batch.schema.get_field_index(RESULT_COLUMN))
                for item in pc.value_counts(column).to_pylist():
                    counts[str(item["values"])] += int(item["counts"])
                if splitter is not None:
                    splitter.feed(batch)
                yield batch
            if splitter is not None:  # before the output replaces its target
                written_split.update(splitter.finish())

        dictionaries = dictionaries_for(spec, output)
        batches = enrich_batches(
            spec, verdicts, missing=missing, dictionaries=dictionaries, sent_column=sent_column
        )
        written = write_output(spec, counted(batches), output, appended=appended)
    if splitter is not None:
        splitter.remove_stale()
    return Enriched(rows=written, results=dict(sorted(counts.items())), split=written_split)

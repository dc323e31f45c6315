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

The lookup is built once per file: the sorted 64-bit hashes of the normalised emails, searched
per batch, each hit confirmed by comparing the strings, so memory follows the number of
verdicts, not rows. The input is parsed by pyarrow only, the same parser `scan`
used, so both passes see the same rows and cells. The figures behind this module's choices
are in docs/design-measurements.md.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from .emails import EmailClass, email_class_expr, normalise_arrow, normalise_series
from .output import check_output, output_kind, write_output
from .parquet import dictionary_encoded
from .spec import OUTPUT_COLUMNS, RESULT_COLUMN, InputSpec, SplitFile, is_text
from .split import Splitter, check_split_paths
from .stream import prefetch, record_batches, regroup, use_jemalloc

__all__ = [
    "MISSING",
    "RESULTS",
    "Enriched",
    "Verdicts",
    "appended_columns",
    "check_sent_column",
    "dictionaries_for",
    "enrich_batches",
    "enrich_file",
]


RESULTS = ("deliverable", "risky", "unknown", "undeliverable", "failed", "invalid_syntax")
"""What a verdict may say: the API's four results, `failed` (no verdict after every retry) and
`invalid_syntax` (an email the API refused as malformed)."""


MISSING = ("pending", "failed", "unknown")
"""Allowed `missing=` values: what a valid email without a verdict shows."""


_OUT = (*RESULTS, "no_email", "pending")


_CODE = {name: i for i, name in enumerate(_OUT)}


_UNKNOWN, _INVALID, _BLANK = _CODE["unknown"], _CODE["invalid_syntax"], _CODE["no_email"]


_CA_NULL = 2


JOIN_BATCH_ROWS = 131_072
"""Rows per batch through the lookup and the writer: smaller batches paid a fixed cost per
batch that showed in the time, larger ones only added memory."""


_CHUNK = 1 << 18


def _concat(chunks: list[pa.Array]) -> pa.Array:
    if len(chunks) == 1:
        return chunks[0]
    try:
        return pa.concat_arrays(chunks)
    except pa.ArrowInvalid:  # over 2 GiB of text in one column
        return pa.concat_arrays([c.cast(pa.large_string()) for c in chunks])


@dataclass(frozen=True, eq=False)
class Verdicts:
    """Results by normalised email, as the pipeline reads them from its store."""

    email: pa.StringArray
    """Normalised emails, one row each (a repeated email: the last row wins)."""
    result: pa.StringArray
    """One of `RESULTS`; anything else is written `unknown`."""
    catch_all: pa.BooleanArray
    """Whether the domain accepts every address; null when the API did not say."""
    normalised: bool = False
    """The emails are already as `scan` gives them (normalised, valid), as the pipeline's are:
    the join then skips normalising and checking them again."""

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, str, bool | None]], *, normalised: bool = False
    ) -> Verdicts:
        """Build from `(email, result, catch_all)` tuples, e.g. a SQLite cursor.

        >>> len(Verdicts.from_rows([("a@b.co", "risky", None)]))
        1
        """
        chunks: tuple[list[pa.Array], list[pa.Array], list[pa.Array]] = ([], [], [])
        emails: list[str] = []
        results: list[str] = []
        catch: list[bool | None] = []

        def flush() -> None:
            chunks[0].append(pa.array(emails, pa.string()))
            chunks[1].append(pa.array(results, pa.string()))
            chunks[2].append(pa.array(catch, pa.bool_()))
            emails.clear()
            results.clear()
            catch.clear()

        # Arrow arrays chunk by chunk: millions of Python strings never pile up.
        for email, result, catch_all in rows:
            emails.append(email)
            results.append(result)
            catch.append(None if catch_all is None else bool(catch_all))
            if len(emails) >= _CHUNK:
                flush()
        flush()
        email, result, catch_all = (_concat(c) for c in chunks)
        return cls(email, result, catch_all, normalised=normalised)

    def __len__(self) -> int:
        return len(self.email)


class _Lookup:
    """Normalised email -> its verdict, built once, probed batch by batch.

    Held compactly: the emails' 64-bit hashes, sorted, with a table of where each run of equal
    leading bits starts (about one hash per run, so a probe reads one or two), each hash's two
    codes, and its row in the email text, which confirms every hit (equal hashes must also be
    equal strings). The text is the caller's own array when normalising changed nothing, as
    for the pipeline's verdicts.
    """

    def __init__(self, verdicts: Verdicts) -> None:
        if not (len(verdicts.email) == len(verdicts.result) == len(verdicts.catch_all)):
            raise ValueError("Verdicts: email, result and catch_all differ in length")
        given = pl.Series("key", verdicts.email, dtype=pl.String)
        key = given if verdicts.normalised else normalise_series(given)
        # The caller's own array where normalising changed nothing (the pipeline's verdicts).
        # Not polars' views: faster to confirm, but 16 bytes a verdict for the whole join.
        self.keys: pa.Array | pa.ChunkedArray = (
            verdicts.email if key is given or given.equals(key) else key.to_arrow()
        )
        result = verdicts.result
        if not is_text(result.type, views=False):
            result = result.cast(pa.string())  # index_in has no kernel for string views
        known = pc.index_in(result, value_set=pa.array(RESULTS, pa.string()))
        code = pl.Series("code", pc.fill_null(known, _UNKNOWN).cast(pa.int8()))
        catch_all = pl.Series("ca", verdicts.catch_all, dtype=pl.Boolean)
        ca = catch_all.cast(pl.Int8).fill_null(_CA_NULL)
        frame = pl.DataFrame([key, code, ca.alias("ca")]).with_row_index("row")
        if not verdicts.normalised:
            # Only valid emails can match a row that is not blank or invalid_syntax, so a hit
            # needs no syntax check.
            frame = frame.filter(email_class_expr(pl.col("key")) == EmailClass.VALID)
        deduplicated = False
        for seed in range(1, 100):
            # One parallel polars sort carries the codes along: faster than numpy's argsort
            # and three gathers.
            table = frame.select(
                pl.col("key").hash(seed=seed).alias("hash"), "row", "code", "ca"
            ).sort("hash")
            hashes = table.get_column("hash").to_numpy()
            if not (hashes[1:] == hashes[:-1]).any():
                break
            if not deduplicated:  # most likely a repeated email: keep its last verdict
                frame = frame.unique(subset="key", keep="last", maintain_order=True)
                deduplicated = True
            # else two emails share a 64-bit hash: try the next seed
        else:  # pragma: no cover - needs 98 colliding seeds
            raise RuntimeError("could not hash the verdicts without collisions")
        self.seed, self.hashes = seed, hashes
        bits = max(1, len(hashes).bit_length() - 1)
        self.shift = np.uint64(64 - bits)
        runs = np.bincount((hashes >> self.shift).astype(np.intp), minlength=1 << bits)
        # 32-bit: half the memory, and a probe reads it faster (a Series holds < 2**32 rows).
        self.starts = np.zeros(len(runs) + 1, dtype=np.uint32)
        np.cumsum(runs, out=self.starts[1:])
        self.rows = table.get_column("row").to_numpy()
        self.codes = table.get_column("code").to_numpy()
        self.ca = table.get_column("ca").to_numpy()

    def find(self, keys: pl.Series) -> np.ndarray:
        """Position of each key in the lookup, -1 where it has no verdict."""
        hashes = keys.hash(seed=self.seed).to_numpy()
        run = (hashes >> self.shift).astype(np.intp)
        first, end = self.starts[run], self.starts[run + 1]
        positions = np.full(len(keys), -1, dtype=np.int64)
        probing = np.flatnonzero(first < end)
        at = first[probing]
        while len(probing):  # step every unmatched probe to the next hash of its run
            match = self.hashes[at] == hashes[probing]
            positions[probing[match]] = at[match]
            at += 1
            more = ~match & (at < end[probing])
            probing, at = probing[more], at[more]
        found = np.flatnonzero(positions >= 0)
        if len(found):  # confirm: equal hashes must also be equal strings
            theirs = self.keys.take(self.rows[positions[found]])
            mine = keys.gather(found).to_arrow().cast(theirs.type)
            same = pc.equal(theirs, mine).to_numpy(zero_copy_only=False)
            positions[found[~same]] = -1
        return positions

    def columns(
        self, values: pa.Array | pa.ChunkedArray, missing: str, *, text: bool, sent: bool = False
    ) -> list[pa.Array]:
        """`email_result` and `email_catch_all` for one batch's raw email cells, and with
        `sent` the address as the API gets it (see `enrich_batches`)."""
        keys = normalise_arrow(values, "k")
        positions = self.find(keys)
        found = positions >= 0
        valid = found.copy()  # the lookup holds valid emails only
        codes = np.full(len(keys), _CODE[missing], dtype=np.int8)
        codes[found] = self.codes[positions[found]]
        ca = np.full(len(keys), _CA_NULL, dtype=np.int8)
        ca[found] = self.ca[positions[found]]
        rest = np.flatnonzero(~found)
        if len(rest):  # the rows without a verdict: blank, invalid or not yet validated
            classes = keys.gather(rest).to_frame().select(email_class_expr(pl.col("k")))
            kind = classes.to_series().to_numpy()
            codes[rest[kind == EmailClass.INVALID]] = _INVALID
            codes[rest[kind == EmailClass.BLANK]] = _BLANK
            valid[rest[kind == EmailClass.VALID]] = True
        result = pa.array(_OUT, pa.string()).take(pa.array(codes))
        if text:
            catch = pa.array(["false", "true", ""], pa.string()).take(pa.array(ca))
        else:
            catch = pa.array([False, True, None], pa.bool_()).take(pa.array(ca))
        if not sent:
            return [result, catch]
        address = keys.to_arrow().cast(pa.string())
        unsent = pa.scalar("" if text else None, pa.string())
        return [result, catch, pc.if_else(pa.array(valid), address, unsent)]


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

    def enriched(building: Future[_Lookup]) -> Iterator[pa.RecordBatch]:
        lookup: _Lookup | None = None
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
        building = pool.submit(_Lookup, verdicts)
        if spec.format != "parquet":
            building.result()
        yield from prefetch(enriched(building))


def appended_columns(sent_column: str | None = None) -> tuple[str, ...]:
    """The names `enrich_batches` appends, in order.

    >>> appended_columns("email_sent")
    ('email_result', 'email_catch_all', 'email_sent')
    """
    return OUTPUT_COLUMNS if sent_column is None else (*OUTPUT_COLUMNS, sent_column)


def check_sent_column(spec: InputSpec, sent_column: str | None) -> None:
    """Refuse a `sent_column` name that the input or the output already uses.

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.csv"))
    >>> check_sent_column(spec, "Email")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ample_batch.errors.InputError: leads.csv: already has a column named 'Email'; give ...
    """
    if sent_column is None:
        return
    if not sent_column.strip():
        raise InputError("--sent-column: the column name is blank; give a name or leave it out")
    if sent_column in spec.columns or sent_column in OUTPUT_COLUMNS:
        raise InputError(
            f"{spec.path.name}: already has a column named {sent_column!r}; "
            "give --sent-column another name"
        )


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

"""What an input file is, and its rows as Arrow record batches: CSV, Parquet and XLSX.

`inspect_input` (in `read`) builds an `InputSpec` from the file's head; everything that streams
the file afterwards (the scan, the join) goes through `record_batches` here, so the two passes
read every cell the same way. CSV cells are read as exact text: no type inference, no nulls,
quoted newlines kept, blank lines kept as rows of empty cells (polars reads them the same way).

Only the read and write stages' modules (this one, `read_parquet`, `utf8`, `write` and
`write_parquet`) touch pyarrow's and calamine's exceptions; they leave as `InputError` with a
one-line message that says what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv

from .csv_errors import csv_error, unclosed_quote_line
from .errors import InputError
from .read_parquet import parquet_batches

T = TypeVar("T")
Format = Literal["csv", "parquet", "xlsx"]

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
SUFFIXES = "use .csv, .tsv, .txt, .csv.gz, .parquet or .xlsx"
DELIMITERS = (",", ";", "\t", "|")
DEFAULT_BATCH_ROWS = 65_536
EMAIL_BATCH_ROWS = 1 << 18
"""Rows per batch of the email column alone (the scan): about 7 MB of text."""
CSV_BLOCK = 2 << 20
"""CSV is parsed in blocks of this many bytes: about 11,000 rows of a 190-byte lead list."""


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What `inspect_input` found out about an input file; every later pass trusts it."""

    path: Path
    """The input file, as given."""
    format: Format
    """`csv` (also .tsv, .txt, .csv.gz), `parquet` or `xlsx`: from the content, not the name."""
    delimiter: str | None = None
    """The CSV field separator (`,` `;` tab `|`); None for Parquet and XLSX."""
    encoding: str | None = None
    """The CSV's text encoding, a Python codec name (`utf-8`, `cp1252`, ...); None otherwise."""
    bom: bool = False
    """The CSV started with a byte-order mark; CSV output then starts with a UTF-8 one."""
    encoding_guessed: bool = False
    """`encoding` is UTF-8 only because the head decoded as UTF-8 (no --encoding, no BOM):
    bytes past the head that are not make the scan read the file again as cp1252."""
    compression: Literal["gzip"] | None = None
    """`gzip` for a .csv.gz; None otherwise."""
    sheet: str | None = None
    """The XLSX sheet read; None for CSV and Parquet."""
    email_column: str
    """The header of the column holding the email."""
    columns: list[str]
    """Every column's header, in order (CSV headers may repeat)."""
    warnings: list[str] = field(default_factory=list)
    """Things the user should know, e.g. `not UTF-8: read as cp1252`."""
    newline: str = "\n"
    """The CSV's line ending (`\\n`, `\\r\\n` or `\\r`), reused when writing CSV."""
    email_index: int = 0
    """Position of the email column in `columns`."""
    skip_lines: int = 0
    """Blank lines before the CSV header, skipped."""
    rows_hint: int | None = None
    """The row count when the format stores it (Parquet, XLSX); None for CSV."""


def use_jemalloc() -> None:
    """Make jemalloc Arrow's default pool: mimalloc costs 2-4x in kernel time on these VMs."""
    with contextlib.suppress(NotImplementedError, pa.ArrowException):  # built without it
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Produce `items` on a worker thread, `depth` ahead: pyarrow parses while polars computes.

    The worker's exception is re-raised in the consumer; a consumer that stops early leaves the
    worker blocked on a bounded queue of `depth`, which ends with the generator's close().
    """
    box: queue.Queue[tuple[int, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((0, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((1, None))
        except BaseException as exc:  # handed to the consumer
            box.put((2, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator: run its cleanup here, on the thread it ran on
                close()

    worker = threading.Thread(target=work, name="ample-batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = box.get()
            if kind == 1:
                return
            if kind == 2:
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(0.05)


# ---------------------------------------------------------------------------------- CSV


def open_binary(spec_path: Path, compression: str | None) -> IO[bytes]:
    """The file's bytes, decompressed."""
    if compression == "gzip":
        return pa.input_stream(str(spec_path), compression="gzip")  # type: ignore[return-value]
    return open(spec_path, "rb")


def csv_options(
    spec: InputSpec, *, include: list[str] | None = None, block_size: int = CSV_BLOCK
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    """pyarrow options that read every cell as its exact text."""
    encoding = spec.encoding or "utf-8"
    read = pacsv.ReadOptions(
        encoding="utf8" if codecs.lookup(encoding).name == "utf-8" else encoding,
        block_size=block_size,
        skip_rows=spec.skip_lines,
    )
    parse = pacsv.ParseOptions(
        delimiter=spec.delimiter or ",",
        quote_char='"',
        double_quote=True,
        escape_char=False,
        newlines_in_values=True,
        ignore_empty_lines=False,
    )
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in spec.columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
        true_values=[],
        false_values=[],
        include_columns=include or [],
        check_utf8=True,
    )
    return read, parse, convert


def csv_batches(
    spec: InputSpec, *, include: list[str] | None = None, block_size: int = CSV_BLOCK
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV as string batches; any parse or decode failure becomes an InputError."""
    stream = open_binary(spec.path, spec.compression)
    reader = None
    try:
        try:
            reader = pacsv.open_csv(
                stream, *csv_options(spec, include=include, block_size=block_size)
            )
            expected = include or spec.columns
            if reader.schema.names != expected:  # the head was parsed by Python's csv module
                raise InputError(
                    f"{spec.path.name}: the header reads differently than inspected "
                    f"({reader.schema.names} vs {expected}); check its quoting"
                )
            yield from reader
        except (pa.ArrowException, UnicodeDecodeError, OSError, EOFError) as exc:
            raise csv_error(spec, exc) from exc
    finally:
        del reader  # let its read-ahead finish before the stream closes under it
        stream.close()


# --------------------------------------------------------------------------------- XLSX


def xlsx_rows(
    path: Path, sheet: str | None, *, nrows: int | None = None
) -> tuple[str, list[list[Any]], int]:
    """The sheet's name, its rows as Python values and its height (header included)."""
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own and zip/xml errors
        raise InputError(
            f"{path.name}: not a readable XLSX workbook ({exc}); save it again"
        ) from exc
    try:
        names = list(book.sheet_names)
        if sheet is None:
            if not names:
                raise InputError(f"{path.name}: the workbook has no sheets; add one with the leads")
            sheet = names[0]
        elif sheet not in names:
            raise InputError(f"{path.name}: no sheet named {sheet!r}; sheets: {', '.join(names)}")
        try:
            data = book.get_sheet_by_name(sheet)
            rows = data.to_python(nrows=nrows)
        except Exception as exc:
            raise InputError(
                f"{path.name}: sheet {sheet!r} cannot be read ({exc}); save the workbook again"
            ) from exc
    finally:
        book.close()
    return sheet, rows, data.height


def _integral(value: float) -> bool:
    return math.isfinite(value) and value.is_integer() and abs(value) < 2**53


def cell_text(value: Any) -> str:
    """How an XLSX cell reads as CSV text: what Excel's own CSV export would show."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if _integral(value) else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def xlsx_column(values: list[Any]) -> pa.Array:
    """One sheet column as Arrow, keeping Excel's types where the column agrees on one.

    A column of numbers stays numeric (int64 when every value is whole), dates stay dates;
    a column mixing types becomes text (see `cell_text`); empty cells are null, or "" in text.
    """
    kinds = {type(v) for v in values if v is not None and v != ""}
    present = [v for v in values if v is not None and v != ""]
    if kinds and kinds <= {float, int} and bool not in kinds:
        if all(_integral(float(v)) for v in present):
            return pa.array([None if v in (None, "") else int(v) for v in values], pa.int64())
        return pa.array([None if v in (None, "") else float(v) for v in values], pa.float64())
    if kinds == {bool}:
        return pa.array([None if v in (None, "") else v for v in values], pa.bool_())
    if kinds and kinds <= {dt.datetime, dt.date} and dt.datetime in kinds:
        return pa.array(
            [
                None
                if v in (None, "")
                else dt.datetime.combine(v, dt.time())
                if type(v) is dt.date
                else v
                for v in values
            ],
            pa.timestamp("us"),
        )
    if kinds == {dt.date}:
        return pa.array([None if v in (None, "") else v for v in values], pa.date32())
    return pa.array([cell_text(v) for v in values], pa.string())


def xlsx_table(spec: InputSpec) -> pa.Table:
    """The whole sheet as a table, header row removed."""
    _, rows, _ = xlsx_rows(spec.path, spec.sheet)
    width = len(spec.columns)
    body = [list(r) + [""] * (width - len(r)) for r in rows[1:]]
    arrays = [xlsx_column([r[i] for r in body]) for i in range(width)]
    return pa.Table.from_arrays(arrays, names=spec.columns)


# ------------------------------------------------------------------------------ General


def record_batches(
    spec: InputSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS, dictionaries: Sequence[str] = ()
) -> Iterator[pa.RecordBatch]:
    """Every row of the input, in order, as record batches of about `batch_rows` rows.

    `dictionaries` (Parquet only, see `read_parquet.dictionary_encoded`) come as Arrow
    dictionaries of their values' type; every other column has the file's own type.
    """
    if spec.format == "csv":
        # Cut by bytes: pyarrow's peak memory grows ~50x its block size (16 MiB: 800 MB).
        yield from csv_batches(spec, block_size=CSV_BLOCK)
    elif spec.format == "parquet":
        yield from parquet_batches(spec, batch_rows=batch_rows, dictionaries=dictionaries)
    else:
        yield from xlsx_table(spec).to_batches(max_chunksize=batch_rows)


def regroup(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches joined up to at least `rows` rows each.

    pyarrow cuts CSV into ~11,000-row blocks, and every later step (polars, Arrow and numpy
    calls) pays a fixed cost per batch: measured at a third of the join's time, and half the
    scan's normalisation.
    """
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if not held and batch.num_rows >= rows:
            yield batch
            continue
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _combine(held)
            held, count = [], 0
    if held:
        yield _combine(held)


def _combine(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def email_batches(spec: InputSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.Array]:
    """Only the email column, streamed (a CSV is still parsed whole: ragged rows fail here)."""
    if spec.format == "csv":
        yield from _csv_email_batches(spec)
    elif spec.format == "parquet":
        for batch in parquet_batches(
            spec, batch_rows=max(batch_rows, EMAIL_BATCH_ROWS), columns=[spec.email_column]
        ):
            yield batch.column(0)
    else:
        for batch in record_batches(spec, batch_rows=batch_rows):
            yield batch.column(spec.email_index)


def _csv_email_batches(spec: InputSpec) -> Iterator[pa.Array]:
    """The email column, and a check that the file does not end inside a quoted field.

    The last column comes along (at no measurable cost): only a last cell of the last row
    that spans lines can be a quote left open, as an open quote in any other column leaves
    its record short of fields, which pyarrow rejects.
    """
    last = spec.columns[-1]
    include = [spec.email_column]
    if last != spec.email_column and spec.columns.count(last) == 1:
        include.append(last)
    final = None
    for batch in regroup(
        csv_batches(spec, include=include, block_size=CSV_BLOCK), EMAIL_BATCH_ROWS
    ):
        if batch.num_rows:
            final = batch.column(len(include) - 1)[-1].as_py()
        yield batch.column(0)
    # A repeated last header cannot be picked by name: then always check.
    if final is None or "\n" in final or "\r" in final or last not in include:
        line = unclosed_quote_line(spec)
        if line is not None:
            raise InputError(
                f"{spec.path.name}: the quoted field that starts in line {line} is never "
                'closed, so every row after it would be one cell; add the missing "'
            )

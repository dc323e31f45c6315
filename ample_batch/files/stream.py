"""The input's rows as Arrow record batches, whatever the format, and a prefetch thread."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from ..errors import InputError
from .csv import csv_batches
from .csv_errors import unclosed_quote_line
from .parquet import parquet_batches
from .spec import CSV_BLOCK, DEFAULT_BATCH_ROWS, EMAIL_BATCH_ROWS, InputSpec
from .xlsx import xlsx_table

T = TypeVar("T")


def use_jemalloc() -> None:
    """Make jemalloc Arrow's default pool: mimalloc spent several times its kernel time."""
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


def record_batches(
    spec: InputSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS, dictionaries: Sequence[str] = ()
) -> Iterator[pa.RecordBatch]:
    """Every row of the input, in order, as record batches of about `batch_rows` rows.

    `dictionaries` (Parquet only, see `parquet.dictionary_encoded`) come as Arrow
    dictionaries of their values' type; every other column has the file's own type.
    """
    if spec.format == "csv":
        # Cut by bytes: pyarrow's peak memory while parsing is many times its block size.
        yield from csv_batches(spec, block_size=CSV_BLOCK)
    elif spec.format == "parquet":
        yield from parquet_batches(spec, batch_rows=batch_rows, dictionaries=dictionaries)
    else:
        yield from xlsx_table(spec).to_batches(max_chunksize=batch_rows)


def regroup(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches joined up to at least `rows` rows each.

    pyarrow cuts CSV into ~11,000-row blocks, and every later step (polars, Arrow and numpy
    calls) pays a fixed cost per batch, at that size a large share of the join and of the scan's
    normalisation.
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


def iter_batches(
    spec: InputSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Every row of the input in order, original columns only; CSV cells as exact text.

    `batch_rows` bounds Parquet and XLSX batches; CSV batches are cut every 2 MiB of text
    (`spec.CSV_BLOCK`), which bounds memory whatever the row width.
    """
    use_jemalloc()
    return record_batches(spec, batch_rows=batch_rows)

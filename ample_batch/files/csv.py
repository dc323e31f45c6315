"""CSV: pyarrow options that read every cell as its exact text, the reader, and the writer."""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError
from .csv_errors import csv_error
from .spec import CSV_BLOCK, OUTPUT_COLUMNS, InputSpec, is_text


def open_binary(spec_path: Path, compression: str | None) -> IO[bytes]:
    """The file's bytes, decompressed."""
    if compression == "gzip":
        return cast(IO[bytes], pa.input_stream(str(spec_path), compression="gzip"))
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


def quote_cell(value: str, delimiter: str) -> str:
    """RFC 4180 quoting, only where needed: delimiter, quote, CR or LF."""
    if any(ch in value for ch in (delimiter, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_header(names: list[str], delimiter: str, newline: str) -> str:
    """The header line, quoted the way the body is."""
    return delimiter.join(quote_cell(n, delimiter) for n in names) + newline


def _render(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One column as CSV text: strings as they are, typed values as their Arrow text."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_dictionary(t):
        return _render(column.cast(t.value_type))
    if is_text(t):
        return column
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()], pa.string())
    if pa.types.is_nested(t) or pa.types.is_null(t):
        return pa.array(
            [
                None if v is None else json.dumps(v, default=str, ensure_ascii=False)
                for v in column.to_pylist()
            ],
            pa.string(),
        )
    try:
        return column.cast(pa.string())
    except pa.ArrowNotImplementedError:
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())


def csv_frame(batch: pa.RecordBatch) -> pl.DataFrame:
    """A batch as a polars frame of text, empty strings as nulls (written unquoted)."""
    names = [f"c{i}" for i in range(batch.num_columns)]
    frame = pl.from_arrow(pa.table([_render(c) for c in batch.columns], names=names))
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        pl.when(pl.col(n).str.len_bytes() == 0).then(None).otherwise(pl.col(n)).alias(n)
        for n in names
    )


def writes_bom(spec: InputSpec) -> bool:
    """Whether CSV output starts with a UTF-8 byte-order mark: when the input had one, or was
    CSV in another encoding than UTF-8 (cp1252: an Excel-on-Windows export).

    Excel reads a CSV without a BOM in the system's ANSI code page, so UTF-8 text written for
    a cp1252 input would show as "GÃ©nÃ©ral" when double-clicked; with the BOM it reads
    UTF-8. A UTF-8 (or ASCII) input without one gets none: other tools read it as it was.

    >>> writes_bom(InputSpec(path=Path("x.csv"), format="csv", encoding="cp1252",
    ...     email_column="email", columns=["email"]))
    True
    """
    if spec.format != "csv":
        return False
    codec = codecs.lookup(spec.encoding or "utf-8").name
    return spec.bom or codec not in {"utf-8", "ascii"}


def write_csv(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    tmp: Path,
    *,
    delimiter: str,
    gzip: bool,
    appended: Sequence[str] = OUTPUT_COLUMNS,
) -> int:
    """Write the batches to `tmp` as CSV in the input's line ending (and BOM, see `writes_bom`);
    rows written."""
    newline = spec.newline if spec.format == "csv" else "\n"
    rows = 0
    sink: IO[bytes]
    with contextlib.ExitStack() as stack:
        if gzip:
            sink = stack.enter_context(pa.output_stream(str(tmp), compression="gzip"))
        else:
            sink = stack.enter_context(open(tmp, "wb"))
        if writes_bom(spec):
            sink.write(b"\xef\xbb\xbf")
        header_done = False
        for batch in batches:
            if not header_done:
                sink.write(csv_header(batch.schema.names, delimiter, newline).encode())
                header_done = True
            if batch.num_rows:
                csv_frame(batch).write_csv(
                    sink,
                    include_header=False,
                    separator=delimiter,
                    line_terminator=newline,
                    quote_style="necessary",
                    null_value="",
                )
            rows += batch.num_rows
        if not header_done:
            names = [*spec.columns, *appended]
            sink.write(csv_header(names, delimiter, newline).encode())
    return rows

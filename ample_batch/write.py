"""The write stage: output paths, output checks, and atomic CSV / Parquet / XLSX writers.

    >>> default_output_path(Path("leads.csv.gz"))
    PosixPath('leads.validated.csv.gz')
    >>> partial_path(Path("out/leads.validated.parquet"))
    PosixPath('out/leads.validated.partial.parquet')

The output format comes from the output's extension. Every writer goes through `atomic`: the
rows go to a temporary file beside the target, which replaces the target only once complete;
any failure removes it. CSV output is UTF-8 (with a BOM when the input had one), uses the
input's delimiter (tab for .tsv) and line ending, and quotes only the cells that need it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError, OutputUnwritten
from .formats import SUFFIXES, InputSpec
from .write_parquet import write_parquet

__all__ = [
    "XLSX_MAX_ROWS",
    "atomic",
    "check_output",
    "csv_header",
    "default_output_path",
    "output_delimiter",
    "output_kind",
    "partial_path",
    "write_output",
]

XLSX_MAX_ROWS = 1_048_576 - 1
"""Data rows an XLSX sheet holds under its header row."""
XLSX_MAX_CELL = 32_767
OutputKind = Literal["csv", "csv.gz", "parquet", "xlsx"]
_KINDS: dict[str, OutputKind] = {
    ".csv.gz": "csv.gz",
    ".tsv.gz": "csv.gz",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
}


def _split(path: Path) -> tuple[str, str]:
    """(stem, extension), treating .csv.gz and .tsv.gz as one extension."""
    name = path.name
    for double in (".csv.gz", ".tsv.gz"):
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double) :]
    return path.stem, path.suffix


def output_kind(output: Path) -> OutputKind:
    """The output format, from the extension; InputError for any other extension."""
    _, ext = _split(output)
    kind = _KINDS.get(ext.lower())
    if kind is None:
        raise InputError(
            f"cannot write {output.name}: unknown output extension {ext or '(none)'}; {SUFFIXES}"
        )
    return kind


def default_output_path(input_path: Path) -> Path:
    """`<stem>.validated<ext>` beside the input (`leads.csv.gz` -> `leads.validated.csv.gz`)."""
    stem, ext = _split(input_path)
    return input_path.with_name(f"{stem}.validated{ext}")


def partial_path(output: Path) -> Path:
    """`<output stem>.partial<ext>`: where an incomplete run writes its rows."""
    stem, ext = _split(output)
    return output.with_name(f"{stem}.partial{ext}")


def output_delimiter(spec: InputSpec, output: Path) -> str:
    """Tab for .tsv, else the input's delimiter when it was delimited text, else a comma."""
    if _split(output)[1].lower().startswith(".tsv"):
        return "\t"
    return spec.delimiter if spec.format == "csv" and spec.delimiter else ","


def check_output(spec: InputSpec, output: Path, *, rows: int | None = None) -> None:
    """Refuse, before any work, an output that cannot be written or would destroy the input.

    >>> check_output(spec, Path("leads.csv"))  # doctest: +SKIP
    Traceback (most recent call last):
    ample_batch.errors.InputError: leads.csv: is the input file; choose another -o
    """
    if output.is_dir():
        raise InputError(f"{output}: is a directory; give a file name for -o")
    kind = output_kind(output)
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"{output}: directory {parent} does not exist; create it or pick another -o"
        )
    if output.resolve() == spec.path.resolve() or (
        output.exists() and os.path.samefile(output, spec.path)
    ):
        raise InputError(f"{output}: is the input file; choose another -o")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{output}: directory {parent} is not writable; pick another -o")
    count = rows if rows is not None else spec.rows_hint
    if kind == "xlsx" and count is not None and count > XLSX_MAX_ROWS:
        raise InputError(
            f"{output.name}: {count:,} rows do not fit in an XLSX sheet "
            f"(at most {XLSX_MAX_ROWS:,}); write .csv or .parquet instead"
        )


_TEMP_FILES: set[str] = set()
"""Temporary outputs being written now: a second Ctrl-C, which leaves at once without
unwinding, removes them first (`remove_temp_files`)."""


def remove_temp_files() -> None:
    """Unlink every temporary output still being written; safe from a signal handler."""
    for name in list(_TEMP_FILES):
        with contextlib.suppress(OSError):
            os.unlink(name)


@contextlib.contextmanager
def atomic(output: Path) -> Iterator[Path]:
    """A temporary path beside `output` that replaces it on success and vanishes on failure."""
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    _TEMP_FILES.add(name)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _TEMP_FILES.discard(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(spec: InputSpec, batches: Iterator[pa.RecordBatch], output: Path) -> int:
    """Write enriched batches to `output` atomically, format from its extension; rows written.

    >>> write_output(spec, enrich_batches(spec, verdicts), Path("out.parquet"))  # doctest: +SKIP
    2000
    """
    kind = output_kind(output)
    try:
        with atomic(output) as tmp:
            if kind == "parquet":
                return write_parquet(spec, batches, tmp)
            if kind == "xlsx":
                return _write_xlsx(spec, batches, tmp)
            return _write_csv(spec, batches, tmp, output, gzip=kind == "csv.gz")
    except OSError as exc:
        # The work is done and paid for by now, and kept in the state: exit 75, not 2.
        raise OutputUnwritten(
            f"{output}: cannot be written ({exc.strerror or exc}); the verdicts are kept: "
            "fix the disk or the directory, then run the same command again to write it "
            "(nothing is paid twice)"
        ) from exc


# ---------------------------------------------------------------------------------- CSV


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
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
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


def _write_csv(
    spec: InputSpec, batches: Iterator[pa.RecordBatch], tmp: Path, output: Path, *, gzip: bool
) -> int:
    delimiter = output_delimiter(spec, output)
    newline = spec.newline if spec.format == "csv" else "\n"
    rows = 0
    sink: IO[bytes]
    with contextlib.ExitStack() as stack:
        if gzip:
            sink = stack.enter_context(pa.output_stream(str(tmp), compression="gzip"))  # type: ignore[arg-type]
        else:
            sink = stack.enter_context(open(tmp, "wb"))
        if spec.bom:
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
            names = [*spec.columns, "email_result", "email_catch_all"]
            sink.write(csv_header(names, delimiter, newline).encode())
    return rows


# --------------------------------------------------------------------------------- XLSX


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # Excel has no time zones
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _write_xlsx(spec: InputSpec, batches: Iterator[pa.RecordBatch], tmp: Path) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils.exceptions import IllegalCharacterError

    book = Workbook(write_only=True)
    sheet = book.create_sheet((spec.sheet or "validated")[:31])
    rows = 0

    def text(value: str) -> WriteOnlyCell:
        if len(value) > XLSX_MAX_CELL:
            raise InputError(
                f"row {rows + 1} has a cell of {len(value):,} characters; XLSX holds "
                f"{XLSX_MAX_CELL:,}: write .csv or .parquet instead"
            )
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # text stays text: "=1+2" is not a formula
        return cell

    header_done = False
    try:
        for batch in batches:
            if not header_done:
                sheet.append([text(n) for n in batch.schema.names])
                header_done = True
            if rows + batch.num_rows > XLSX_MAX_ROWS:
                raise InputError(
                    f"over {XLSX_MAX_ROWS:,} rows do not fit in an XLSX sheet; "
                    "write .csv or .parquet instead"
                )
            columns = [c.to_pylist() for c in batch.columns]
            for values in zip(*columns, strict=True):
                sheet.append([text(v) if isinstance(v, str) else _xlsx_value(v) for v in values])
                rows += 1
        if not header_done:
            sheet.append([text(n) for n in [*spec.columns, "email_result", "email_catch_all"]])
        book.save(str(tmp))
    except BaseException as exc:
        _discard(sheet)
        if isinstance(exc, IllegalCharacterError):
            raise InputError(
                f"row {rows + 1} has a control character that XLSX cannot hold; "
                "write .csv or .parquet instead"
            ) from exc
        raise
    return rows


def _discard(sheet: Any) -> None:
    """Finish openpyxl's half-written sheet quietly and delete its scratch file."""
    with contextlib.suppress(Exception):
        sheet.close()
    scratch = getattr(getattr(sheet, "_writer", None), "out", None)
    if isinstance(scratch, str):
        with contextlib.suppress(OSError):
            os.remove(scratch)

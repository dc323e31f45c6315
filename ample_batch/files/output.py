"""The write stage: output paths, output checks, and atomic CSV / Parquet / XLSX writers.

    >>> default_output_path(Path("leads.csv.gz"))
    PosixPath('leads.validated.csv.gz')
    >>> partial_path(Path("out/leads.validated.parquet"))
    PosixPath('out/leads.validated.partial.parquet')

The output format comes from the output's extension. Every writer goes through `atomic`: the
rows go to a temporary file beside the target, which replaces the target only once complete;
any failure removes it. CSV output is UTF-8 (with a BOM when the input had one or was not
UTF-8: `csv.writes_bom`), uses the input's delimiter (tab for .tsv) and line ending, and
quotes only the cells that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa

from ..errors import InputError, OutputUnwritten
from .csv import write_csv
from .parquet import write_parquet
from .spec import OUTPUT_COLUMNS, SUFFIXES, InputSpec
from .xlsx import XLSX_MAX_ROWS, write_xlsx

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


def stem_and_extension(path: Path) -> tuple[str, str]:
    """(stem, extension), treating .csv.gz and .tsv.gz as one extension.

    >>> stem_and_extension(Path("leads.validated.csv.gz"))
    ('leads.validated', '.csv.gz')
    """
    name = path.name
    for double in (".csv.gz", ".tsv.gz"):
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double) :]
    return path.stem, path.suffix


def output_kind(output: Path) -> OutputKind:
    """The output format, from the extension; InputError for any other extension."""
    _, ext = stem_and_extension(output)
    kind = _KINDS.get(ext.lower())
    if kind is None:
        raise InputError(
            f"cannot write {output.name}: unknown output extension {ext or '(none)'}; {SUFFIXES}"
        )
    return kind


def default_output_path(input_path: Path, sheet: str | None = None) -> Path:
    """`<stem>.validated<ext>` beside the input (`leads.csv.gz` -> `leads.validated.csv.gz`);
    `<stem>.<sheet>.validated<ext>` for a workbook sheet other than the default one, so that
    two sheets' runs do not write over each other's output.

    >>> default_output_path(Path("regions.xlsx"), "West / 2026").name
    'regions.West-2026.validated.xlsx'
    """
    stem, ext = stem_and_extension(input_path)
    if sheet is not None:
        stem = f"{stem}.{_file_name_part(sheet)}"
    return input_path.with_name(f"{stem}.validated{ext}")


def _file_name_part(text: str) -> str:
    """`text` as one part of a file name: runs of anything but letters, digits, `_` and `-`
    become one `-` (a sheet may be named `West / 2026`)."""
    return re.sub(r"[^\w-]+", "-", text).strip("-") or "sheet"


def partial_path(output: Path) -> Path:
    """`<output stem>.partial<ext>`: where an incomplete run writes its rows."""
    stem, ext = stem_and_extension(output)
    return output.with_name(f"{stem}.partial{ext}")


def output_delimiter(spec: InputSpec, output: Path) -> str:
    """Tab for .tsv, else the input's delimiter when it was delimited text, else a comma."""
    if stem_and_extension(output)[1].lower().startswith(".tsv"):
        return "\t"
    return spec.delimiter if spec.format == "csv" and spec.delimiter else ","


def check_output(spec: InputSpec, output: Path, *, rows: int | None = None) -> None:
    """Refuse, before any work, an output that cannot be written or would destroy the input.

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.csv"))
    >>> check_output(spec, Path("sample_data/leads.csv"))
    Traceback (most recent call last):
    ample_batch.errors.InputError: sample_data/leads.csv: is the input file; choose another -o
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


def write_output(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    output: Path,
    *,
    appended: Sequence[str] = OUTPUT_COLUMNS,
) -> int:
    """Write enriched batches to `output` atomically, format from its extension; rows written.

    `appended` names the columns the batches carry after the input's (`appended.appended_columns`).

    >>> from tempfile import TemporaryDirectory
    >>> from ample_batch.files.inspect import inspect_input
    >>> from ample_batch.files.join import enrich_batches
    >>> from ample_batch.files.verdicts import Verdicts
    >>> spec = inspect_input(Path("sample_data/leads.csv"))
    >>> with TemporaryDirectory() as tmp:
    ...     write_output(spec, enrich_batches(spec, Verdicts.from_rows([])), Path(tmp) / "o.tsv")
    2000
    """
    with unwritten_as_stop(output), atomic(output) as tmp:
        return write_format(spec, batches, output, tmp, appended=appended)


def write_format(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    output: Path,
    tmp: Path,
    *,
    appended: Sequence[str] = OUTPUT_COLUMNS,
    keep_sheets: bool = True,
) -> int:
    """Write the batches to `tmp` in the format `output`'s extension names; rows written.
    `keep_sheets=False` leaves an XLSX input's other sheets out of an XLSX output."""
    kind = output_kind(output)
    if kind == "parquet":
        return write_parquet(spec, batches, tmp, appended=appended)
    if kind == "xlsx":
        return write_xlsx(spec, batches, tmp, appended=appended, keep_sheets=keep_sheets)
    return write_csv(
        spec,
        batches,
        tmp,
        delimiter=output_delimiter(spec, output),
        gzip=kind == "csv.gz",
        appended=appended,
    )


@contextlib.contextmanager
def unwritten_as_stop(output: Path) -> Iterator[None]:
    """An OSError while writing `output` becomes OutputUnwritten, which says what to do."""
    try:
        yield
    except OSError as exc:
        # The work is done and paid for by now, and kept in the state: exit 75, not 2.
        raise OutputUnwritten(
            f"{output}: cannot be written ({exc.strerror or exc}); the verdicts are kept: "
            "fix the disk or the directory, then run the same command again to write it "
            "(nothing is paid twice)"
        ) from exc

"""files.inspect"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Literal

import pyarrow as pa

from ..errors import InputError
from .detect import (
    HEAD_BYTES,
    decode_head,
    dialect,
    gunzip_head,
    looks_binary,
    lying_name,
    newline,
    sniff,
)
from .emails import find_email_column
from .parquet import parquet_file
from .spec import OUTPUT_COLUMNS, SUFFIXES, InputSpec, is_text
from .xlsx import cell_text, xlsx_rows, xlsx_sheet_names

SAMPLE_ROWS = 2000


_KIND_NAMES = {"parquet": "Parquet", "gzip": "gzipped CSV", "text": "CSV"}


def inspect_input(
    path: Path,
    *,
    email_column: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> InputSpec:
    """Find the format, dialect, encoding and email column from the head of the file.

    Raises InputError, with a message that says what to do, for every file it cannot read.

    >>> inspect_input(Path("sample_data/leads.parquet")).format
    'parquet'
    """
    path = Path(path)
    try:
        if not path.exists():
            raise InputError(f"{path}: no such file; check the path")
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give the lead file inside it")
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied; make the file readable") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise InputError(f"{path.name}: the file is empty; export the leads again")

    kind = sniff(path, head)
    if sheet is not None and kind != "xlsx":
        # Ignoring it would validate a file the user did not mean: a wrong path, most often.
        raise InputError(
            f"{path.name}: --sheet {sheet} is for XLSX workbooks, and this is a "
            f"{_KIND_NAMES.get(kind, kind)} file; leave --sheet out or give the workbook"
        )
    if kind == "parquet":
        return _inspect_parquet(path, email_column)
    if kind == "xlsx":
        return _inspect_xlsx(path, email_column, sheet)
    compression: Literal["gzip"] | None = None
    if kind == "gzip":
        compression = "gzip"
        head, complete = gunzip_head(path)
    else:
        complete = size <= len(head)
    spec = _inspect_csv(path, head, complete, compression, email_column, encoding)
    lying = lying_name(path) if compression is None else None
    return dataclasses.replace(spec, warnings=[lying, *spec.warnings]) if lying else spec


def _inspect_csv(
    path: Path,
    head: bytes,
    complete: bool,
    compression: Literal["gzip"] | None,
    email_column: str | None,
    encoding: str | None,
) -> InputSpec:
    text, codec, bom, warnings = decode_head(path, head, complete, encoding)
    if not text.strip():
        raise InputError(f"{path.name}: the file is empty (no header, no rows)")
    if looks_binary(text):
        raise InputError(f"{path.name}: binary data, not text; {SUFFIXES}")
    stripped = text.lstrip("\r\n")
    leading = text[: len(text) - len(stripped)]  # blank lines before the header
    skip = leading.count("\n") or leading.count("\r")
    delimiter = dialect(path, stripped, complete)
    draft = InputSpec(
        path=path,
        format="csv",
        delimiter=delimiter,
        encoding=codec,
        bom=bom,
        encoding_guessed=encoding is None and not bom and codec == "utf-8",
        compression=compression,
        sheet=None,
        email_column="",
        columns=[],
        warnings=warnings,
        newline=newline(stripped),
        skip_lines=skip,
    )
    # The head is parsed with Python's csv module, not pyarrow: a pyarrow CSV reader in a
    # process that exits right after inspection (every bad-input exit) can abort it at shutdown
    # ("terminate called without an active exception"). The full passes check that pyarrow
    # reads the same header.
    body = stripped if complete else stripped[: max(stripped.rfind("\n"), stripped.rfind("\r")) + 1]
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter, strict=False)
    records: list[tuple[int, list[str]]] = []
    end = 0
    for record in reader:
        records.append((end + 1 + skip, record))
        end = reader.line_num
        if len(records) > SAMPLE_ROWS:
            break
    if not complete and len(records) <= SAMPLE_ROWS:
        records = records[:-1]  # the last record may be cut in the middle of a quoted field
    if not records or not records[0][1]:
        raise InputError(f"{path.name}: the file is empty (no header, no rows)")
    columns = records[0][1]
    draft = dataclasses.replace(draft, columns=columns)
    for line, record in records[1:]:
        if record and len(record) != len(columns):
            raise InputError(
                f"{path.name}: line {line} has {len(record)} fields but the header has "
                f"{len(columns)}; fix that row (or an unbalanced quote before it)"
            )
    rows = [r if r else [""] * len(columns) for _, r in records[1:]]
    if not rows and complete:
        raise InputError(f"{path.name}: has a header but no rows to validate")
    samples = {name: [r[i] for r in rows] for i, name in enumerate(columns)}
    return _finish(draft, columns, samples, email_column, text_like=set(columns))


def _inspect_parquet(path: Path, email_column: str | None) -> InputSpec:
    pf = parquet_file(path)
    try:
        schema = pf.schema_arrow
        columns = list(schema.names)
        rows = pf.metadata.num_rows
        if rows == 0:
            raise InputError(f"{path.name}: has a schema but no rows to validate")
        text_like = {f.name for f in schema if is_text(f.type, dictionaries=True)}
        samples: dict[str, list[str]] = {}
        wanted = [c for c in columns if c in text_like and columns.count(c) == 1]
        if wanted:
            try:
                first = next(pf.iter_batches(batch_size=SAMPLE_ROWS, columns=wanted))
            except (pa.ArrowException, OSError) as exc:
                raise InputError(
                    f"{path.name}: a Parquet page cannot be read (truncated or "
                    f"corrupt: {exc}); export it again"
                ) from exc
            samples = {n: [cell_text(v) for v in first.column(n).to_pylist()] for n in wanted}
    finally:
        pf.close()
    draft = InputSpec(
        path=path,
        format="parquet",
        email_column="",
        columns=columns,
        rows_hint=rows,
    )
    return _finish(draft, columns, samples, email_column, text_like=text_like)


def _inspect_xlsx(path: Path, email_column: str | None, sheet: str | None) -> InputSpec:
    """The sheet given, else the first; when the first has no email column (a summary sheet
    before `Leads`), the one other sheet that has one, or a message naming the sheets."""
    if sheet is not None:
        spec = _inspect_sheet(path, email_column, sheet)
        # A sheet other than the one read without --sheet is a job of its own; the default
        # sheet keeps the id it always had (`InputSpec.identity_sheet`). Where there is no
        # default (several sheets with emails, or none), the first candidate keeps it.
        names, found = _email_sheets(path, email_column)
        default = found[0].name if found else names[0]
        return dataclasses.replace(spec, sheet_in_identity=spec.sheet != default)
    names, found = _email_sheets(path, email_column)
    listed = ", ".join(repr(name) for name in names)
    column = "an email column" if email_column is None else f"a column {email_column!r}"
    if len(found) == 1 and found[0].name == names[0]:
        return _inspect_sheet(path, email_column, names[0], found[0])
    if len(found) == 1:
        spec = _inspect_sheet(path, email_column, found[0].name, found[0])
        note = (
            f"read sheet {found[0].name!r}: the first sheet, {names[0]!r}, has no email column "
            "(choose another with --sheet NAME)"
        )
        return dataclasses.replace(spec, warnings=[*spec.warnings, note])
    if found:
        both = " and ".join(repr(head.name) for head in found)
        raise InputError(
            f"{path.name}: sheets {both} each have {column}; choose one with --sheet NAME "
            f"(sheets: {listed})"
        )
    raise InputError(
        f"{path.name}: no sheet has {column}; choose the sheet with --sheet NAME "
        f"(sheets: {listed}) and its column with --email-column NAME"
    )


def _email_sheets(path: Path, email_column: str | None) -> tuple[list[str], list[_SheetHead]]:
    """The workbook's sheet names, and the sheets reading without --sheet would choose
    among: the first alone when it is the only one or has an email column, else every
    other sheet that has one (one: it is read; several: the user must choose)."""
    names = xlsx_sheet_names(path)
    first = _SheetHead.read(path, names[0])
    if len(names) == 1 or first.has_email_column(email_column):
        return names, [first]
    heads = [_SheetHead.read(path, name) for name in names[1:]]
    return names, [head for head in heads if head.has_email_column(email_column)]


@dataclasses.dataclass(frozen=True)
class _SheetHead:
    """A sheet's first rows, as its inspection reads them."""

    name: str
    rows: list[list[object]]
    height: int

    @classmethod
    def read(cls, path: Path, name: str) -> _SheetHead:
        return cls(*xlsx_rows(path, name, nrows=SAMPLE_ROWS + 1))

    @property
    def columns(self) -> list[str]:
        return [cell_text(v) for v in self.rows[0]] if self.rows else []

    def samples(self) -> dict[str, list[str]]:
        return {
            c: [cell_text(r[i]) for r in self.rows[1:] if i < len(r)]
            for i, c in enumerate(self.columns)
        }

    def has_email_column(self, email_column: str | None) -> bool:
        """Rows under a header with the named column, or one that looks like emails."""
        columns = self.columns
        if self.height <= 1 or not any(columns):
            return False
        if email_column is not None:
            wanted = email_column.strip().lower()
            return any(c == email_column or c.strip().lower() == wanted for c in columns)
        found, tied = find_email_column(list(dict.fromkeys(columns)), self.samples())
        return found is not None or bool(tied)


def _inspect_sheet(
    path: Path, email_column: str | None, sheet: str, head: _SheetHead | None = None
) -> InputSpec:
    head = head or _SheetHead.read(path, sheet)
    name, columns = head.name, head.columns
    if not any(columns):
        raise InputError(f"{path.name}: sheet {name!r} is empty; pick another with --sheet")
    if head.height <= 1:
        raise InputError(f"{path.name}: sheet {name!r} has a header but no rows to validate")
    draft = InputSpec(
        path=path,
        format="xlsx",
        sheet=name,
        email_column="",
        columns=columns,
        rows_hint=head.height - 1,
    )
    return _finish(draft, columns, head.samples(), email_column, text_like=set(columns))


def _finish(
    draft: InputSpec,
    columns: list[str],
    samples: dict[str, list[str]],
    email_column: str | None,
    *,
    text_like: set[str],
) -> InputSpec:
    name = draft.path.name
    taken = [c for c in OUTPUT_COLUMNS if c in columns]
    if taken:
        raise InputError(
            f"{name}: already has a column named {taken[0]} (an ample-batch output?); validate "
            "the original file, or rename that column"
        )
    shown = ", ".join(repr(c) for c in columns[:30]) + (", ..." if len(columns) > 30 else "")
    if email_column is not None:
        matches = [c for c in columns if c == email_column] or [
            c for c in columns if c.strip().lower() == email_column.strip().lower()
        ]
        if not matches:
            raise InputError(f"{name}: no column named {email_column!r}; columns: {shown}")
        chosen = matches[0]
        if len(set(matches)) > 1:
            raise InputError(f"{name}: several columns match {email_column!r}; give the exact name")
    else:
        found, tied = find_email_column(
            [c for c in dict.fromkeys(columns) if c in text_like], samples
        )
        if found is None and tied:
            both = " and ".join(repr(c) for c in tied[:4])
            raise InputError(
                f"{name}: {both} both look like email columns; choose one with --email-column"
            )
        if found is None:
            raise InputError(
                f"{name}: no email column found; name it with --email-column (columns: {shown})"
            )
        chosen = found
    if columns.count(chosen) > 1:
        raise InputError(
            f"{name}: {columns.count(chosen)} columns are named {chosen!r}; "
            "rename the duplicates so the email column is unambiguous"
        )
    if chosen not in text_like:
        raise InputError(
            f"{name}: column {chosen!r} does not hold text; pick the email column "
            "with --email-column"
        )
    return dataclasses.replace(draft, email_column=chosen, email_index=columns.index(chosen))


def fingerprint(spec: InputSpec) -> str:
    """A content hash of the whole file (BLAKE2b, streamed): any changed byte changes it.

    >>> len(fingerprint(inspect_input(Path("sample_data/leads.csv"))))
    40
    """
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open(spec.path, "rb") as f:
            digest.update(os.fstat(f.fileno()).st_size.to_bytes(8, "little"))
            while chunk := f.read(8 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{spec.path}: cannot be read ({exc.strerror})") from exc
    return digest.hexdigest()

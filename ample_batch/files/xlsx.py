"""XLSX: a sheet read into Arrow with Excel's types, and the workbook writer."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import InputError
from .spec import OUTPUT_COLUMNS, InputSpec
from .xlsx_sheets import copy_sheet, other_sheets


def xlsx_rows(
    path: Path, sheet: str | None, *, nrows: int | None = None
) -> tuple[str, list[list[Any]], int]:
    """The sheet's name, its rows as Python values and its height (header included)."""
    book = _open_workbook(path)
    try:
        names = list(book.sheet_names)
        if sheet is None:
            if not names:
                raise InputError(_NO_SHEETS.format(name=path.name))
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


def xlsx_sheet_names(path: Path) -> list[str]:
    """The workbook's sheet names, in order."""
    book = _open_workbook(path)
    try:
        names = list(book.sheet_names)
    finally:
        book.close()
    if not names:
        raise InputError(_NO_SHEETS.format(name=path.name))
    return names


_NO_SHEETS = "{name}: the workbook has no sheets; add one with the leads"


def _open_workbook(path: Path) -> Any:
    """The workbook, read by calamine; InputError when it is not one."""
    from python_calamine import CalamineWorkbook

    try:
        return CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own and zip/xml errors
        raise InputError(
            f"{path.name}: not a readable XLSX workbook ({exc}); save it again"
        ) from exc


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


XLSX_MAX_ROWS = 1_048_576 - 1
"""Data rows an XLSX sheet holds under its header row."""


XLSX_MAX_CELL = 32_767


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


def write_xlsx(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    tmp: Path,
    *,
    appended: Sequence[str] = OUTPUT_COLUMNS,
    keep_sheets: bool = True,
) -> int:
    """Write enriched batches to `tmp` as a workbook; rows written. With `keep_sheets`, an
    XLSX input's other sheets come along, in order (`xlsx_sheets`); split files go without.
    """
    with other_sheets(spec) if keep_sheets else _only(spec) as order:
        return _write_workbook(spec, batches, tmp, appended, order)


@contextlib.contextmanager
def _only(spec: InputSpec) -> Iterator[list[tuple[str, Any]]]:
    yield [(spec.sheet or "validated", None)]


def _write_workbook(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    tmp: Path,
    appended: Sequence[str],
    order: list[tuple[str, Any]],
) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils.exceptions import IllegalCharacterError

    book = Workbook(write_only=True)
    # Every sheet is created up front, in the input's order; each is filled in its turn.
    sheets = [(book.create_sheet(name[:31]), source) for name, source in order]
    sheet = next(target for target, source in sheets if source is None)
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
            sheet.append([text(n) for n in [*spec.columns, *appended]])
        for target, source in sheets:
            if source is not None:
                copy_sheet(source, target)
        book.save(str(tmp))
    except BaseException as exc:
        for target, _ in sheets:
            _discard(target)
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

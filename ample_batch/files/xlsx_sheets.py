"""The input workbook's other sheets, copied into the output workbook around the validated one.

A workbook often holds more than the leads (a summary before them, notes after): the output
keeps every sheet, in the input's order and visibility, the validated sheet in its place. Each
other sheet is streamed cell by cell (openpyxl's read-only mode, so a large one is never held
whole): values, formulas, text that only looks like one, and number formats (dates stay
dates) are kept; fonts, fills, column widths, merged cells, images and charts are not, as
openpyxl's streaming writer cannot copy them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .spec import InputSpec


@contextlib.contextmanager
def other_sheets(spec: InputSpec) -> Iterator[list[tuple[str, Any]]]:
    """Every sheet of an XLSX input in order, as `(name, openpyxl read-only sheet or None)`:
    None marks the validated sheet. Only the validated sheet for any other input, or when
    openpyxl cannot read the workbook that calamine did (then the other sheets are dropped, as
    they always were, rather than fail a paid run)."""
    name = spec.sheet or "validated"
    if spec.format != "xlsx":
        yield [(name, None)]
        return
    from openpyxl import load_workbook

    try:
        book = load_workbook(spec.path, read_only=True, data_only=False)
    except Exception:  # openpyxl raises zip, xml and its own errors
        yield [(name, None)]
        return
    try:
        if name not in book.sheetnames:
            yield [(name, None)]
        else:
            yield [(n, None if n == name else book[n]) for n in book.sheetnames]
    finally:
        book.close()


def copy_sheet(source: Any, target: Any) -> None:
    """Append every row of a read-only sheet to a write-only one, keeping what can be kept."""
    from openpyxl.cell import WriteOnlyCell

    with contextlib.suppress(AttributeError, ValueError):
        target.sheet_state = source.sheet_state  # hidden stays hidden
    for row in source.iter_rows():
        cells: list[Any] = []
        for cell in row:
            value = getattr(cell, "value", None)
            if value is None:
                cells.append(None)
                continue
            copied = WriteOnlyCell(target, value=value)
            if getattr(cell, "data_type", None) == "s":
                copied.data_type = "s"  # "=text" that was text stays text
            number_format = getattr(cell, "number_format", "General")
            if number_format and number_format != "General":
                copied.number_format = number_format
            cells.append(copied)
        target.append(cells)

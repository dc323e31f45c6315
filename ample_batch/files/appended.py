"""The names of the columns the join appends, and the check that a `--sent-column` name is free.

`email_result` and `email_catch_all` always; with `sent_column`, a third holding the address
as sent. Nothing here reads a file, so a caller can refuse a taken name before any paid work
(the pipeline does, in `prepare`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError
from .spec import OUTPUT_COLUMNS

if TYPE_CHECKING:
    from .spec import InputSpec

__all__ = ["appended_columns", "check_sent_column"]


def appended_columns(sent_column: str | None = None) -> tuple[str, ...]:
    """The names `join.enrich_batches` appends, in order.

    >>> appended_columns("email_sent")
    ('email_result', 'email_catch_all', 'email_sent')
    """
    return OUTPUT_COLUMNS if sent_column is None else (*OUTPUT_COLUMNS, sent_column)


def check_sent_column(spec: InputSpec, sent_column: str | None) -> None:
    """Refuse a `sent_column` name that the input or the output already uses.

    >>> from pathlib import Path
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

"""Where a CSV goes wrong: the messages that name the line, and the slow passes that find it.

pyarrow parses every CSV but says little about a broken one; these walk the file once more
with Python's csv module, only on an error path or on suspicion, to tell the user which line
to fix.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
from collections.abc import Iterator
from typing import Any

from ..errors import InputError
from .spec import InputSpec

__all__ = ["csv_error", "ragged_line", "unclosed_quote_line"]


def csv_error(spec: InputSpec, exc: BaseException) -> InputError:
    """Translate a pyarrow CSV failure into a message that names the line and the fix."""
    text = str(exc)
    name = spec.path.name
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in text or "UTF-8" in text:
        return InputError(
            f"{name}: bytes that are not valid {spec.encoding or 'utf-8'} past the start of the "
            "file; pass --encoding (e.g. --encoding cp1252) with the file's real encoding"
        )
    if "Expected" in text and "columns" in text:
        where = ragged_line(spec)
        if where is not None:
            line, got, expected = where
            return InputError(
                f"{name}: line {line} has {got} fields but the header has {expected}; "
                "fix that row (or an unbalanced quote before it)"
            )
        return InputError(f"{name}: {text.splitlines()[0]}; fix that row's fields")
    if isinstance(exc, (OSError, EOFError)) and spec.compression == "gzip":
        return InputError(f"{name}: the gzip stream is corrupt or truncated; recompress the file")
    return InputError(f"{name}: cannot be read as CSV ({text.splitlines()[0]}); check the file")


@contextlib.contextmanager
def _python_csv(spec: InputSpec, tail: tuple[str, ...] = ()) -> Iterator[Any]:
    """Python's csv reader over the file's text (then `tail`), for the slow error paths."""
    # A quote left open makes one cell of the rest of the file: lift the 128 KiB field cap
    # (process-wide, but only ever raised).
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    opener = gzip.open if spec.compression == "gzip" else open
    with opener(spec.path, "rb") as raw:
        text = io.TextIOWrapper(
            raw, encoding=spec.encoding or "utf-8", errors="replace", newline=""
        )
        lines = itertools.chain(text, tail)
        yield csv.reader(lines, delimiter=spec.delimiter or ",", quotechar='"', strict=False)


def ragged_line(spec: InputSpec) -> tuple[int, int, int] | None:
    """The first physical line (1-based) whose record has the wrong field count, that count and
    the header's.

    Only runs on the error path: Python's csv module walks the file once more.
    """
    expected = -1
    with _python_csv(spec) as reader:
        previous_end = 0
        try:
            for record in reader:
                start, previous_end = previous_end + 1, reader.line_num
                if not record:  # a blank line: pyarrow reads it as a row of empty cells
                    continue
                if expected < 0:
                    expected = len(record)
                elif len(record) != expected:
                    return start, len(record), expected
        except csv.Error:
            return None
    return None


_END = "\x00ample-batch: end of file\x00"


def unclosed_quote_line(spec: InputSpec) -> int | None:
    """The first line of the last record when the file ends inside a quoted field, else None.

    pyarrow takes the end of the file as the end of an open quote, so a stray `"` in the last
    column silently swallows every row after it into one cell. Here the text is followed by a
    line break and a marker: a closed file reads the marker as a record of its own, an open
    quote swallows it too. Python's csv walks the whole file, so this runs only on suspicion
    (see `email_batches`).
    """
    with _python_csv(spec, ("\n", _END)) as reader:
        start = previous_end = 0
        last: list[str] = []
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            last = record
    return start if last and last[-1].endswith(_END) and last != [_END] else None

"""The scan: stream the email column once and count it (rows, blanks, invalid, distinct)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from ..errors import InputError
from .distinct import DistinctEmails
from .emails import EmailClass, email_class_expr, normalise_arrow
from .spec import InputSpec
from .stream import email_batches, prefetch, use_jemalloc
from .utf8 import NotUtf8, check_utf8


@dataclass(frozen=True)
class Scan:
    """Counts and unique emails of one full pass over the input, for the planner."""

    rows: int
    """Data rows (the header excluded)."""
    blank: int
    """Rows whose email cell is empty once normalised: `no_email`."""
    invalid: int
    """Rows whose email can never be deliverable: `invalid_syntax`, never sent."""
    valid: int
    """Rows with a syntactically valid email."""
    unique: pa.StringArray
    """The distinct normalised valid emails, in no particular order."""
    duplicates: int
    """Valid rows minus unique emails: credits saved."""
    spec: InputSpec
    """The input as the scan read it, for the join to read it the same way: the given spec,
    or a cp1252 one when bytes past the head turned out not to be UTF-8."""


def scan(spec: InputSpec) -> Scan:
    """Count rows, blank, invalid and valid emails, and collect the unique valid ones.

    Reads the whole file once; a ragged CSV row or an undecodable byte raises InputError here,
    before anything is spent. Parsing (pyarrow threads), the UTF-8 check (another thread) and
    normalisation (polars) overlap. A file taken for UTF-8 from its head alone that holds other
    bytes further on is read again as cp1252, with a warning (`Scan.spec` says so).
    """
    try:
        return _scan(spec)
    except NotUtf8 as exc:
        if not spec.encoding_guessed:
            raise
        fallback = dataclasses.replace(
            spec,
            encoding="cp1252",
            encoding_guessed=False,
            warnings=[*spec.warnings, f"not UTF-8 (line {exc.line}): read as cp1252"],
        )
    return _scan(fallback)


def _scan(spec: InputSpec) -> Scan:
    use_jemalloc()
    checker: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        if spec.format == "csv" and spec.encoding == "utf-8":
            checker = pool.submit(check_utf8, spec)
        try:
            rows, blank, invalid, valid, unique = _scan_emails(spec)
        except InputError:
            if checker is not None and checker.exception() is not None:
                checker.result()  # the encoding error explains the parse error: raise it
            raise
        if checker is not None:
            checker.result()
    return Scan(
        rows=rows,
        blank=blank,
        invalid=invalid,
        valid=valid,
        unique=unique,
        duplicates=valid - len(unique),
        spec=spec,
    )


def _scan_emails(spec: InputSpec) -> tuple[int, int, int, int, pa.StringArray]:
    rows = blank = invalid = valid = 0
    distinct = DistinctEmails()
    for values in prefetch(email_batches(spec)):
        keys = normalise_arrow(values, "k")
        classes = keys.to_frame().select(email_class_expr(pl.col("k"))).to_series()
        counts = dict(classes.value_counts().iter_rows())
        rows += len(keys)
        blank += counts.get(EmailClass.BLANK, 0)
        invalid += counts.get(EmailClass.INVALID, 0)
        valid += counts.get(EmailClass.VALID, 0)
        distinct.add(keys.filter(classes == EmailClass.VALID))
    return rows, blank, invalid, valid, distinct.result()

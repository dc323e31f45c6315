"""Email normalisation, syntax classification and email-column detection.

One implementation, vectorised with polars, serves every caller: the scalar functions run the
same expression on a one-element array, so the scan, the join and the result store can never
disagree about what "the same email" means.

    >>> normalise_email("  Jane Doe <Jane.Doe@Example.COM> ")
    'jane.doe@example.com'
    >>> is_valid_email("jane@example")
    False
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .spec import is_text

__all__ = [
    "EmailClass",
    "classify_emails",
    "email_class_expr",
    "find_email_column",
    "is_valid_email",
    "normalise_arrow",
    "normalise_email",
    "normalise_emails",
    "normalise_series",
]


# Stripped from both ends. Explicit rather than "Unicode whitespace" so that the rule does not
# depend on which library's definition is in force; includes the invisible characters that
# copy-paste from web pages leaves around addresses.
STRIP = (
    " \t\r\n\x0b\x0c\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
)


_ASCII_STRIP = "".join(c for c in STRIP if c.isascii())


_STRIP_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in STRIP) + "]"


# `mailto:` (repeated, any case) and everything from a `?subject=` query on: keep the address.
_MAILTO = rf"(?is)^(?:mailto:{_STRIP_CLASS}*)+([^?]*)(?:\?.*)?$"


# "Name <addr>": exactly one '<' and one '>', the '>' last.
_ANGLE = r"^[^<>]*<([^<>]*)>$"


# Characters that can never appear unquoted in a deliverable address.
_BAD = r"\s\p{Cc}@" + _STRIP_CLASS[1:-1]


_VALID = rf"^[^{_BAD}]+@[^{_BAD}.]+(?:\.[^{_BAD}.]+)+$"


class EmailClass(enum.IntEnum):
    """What a row's email cell holds, after normalisation."""

    BLANK = 0
    INVALID = 1
    VALID = 2


def _unwrap_expr(s: pl.Expr) -> pl.Expr:
    s = s.str.replace(_MAILTO, "${1}").str.strip_chars(STRIP)
    s = s.str.replace(_ANGLE, "${1}").str.strip_chars(STRIP)
    return s.str.replace(_MAILTO, "${1}").str.strip_chars(STRIP)


def normalise_series(values: pl.Series) -> pl.Series:
    """Normalise a polars Series of emails; nulls become "".

    Trim, unwrap `mailto:` (dropping a `?subject=` query), unwrap `Name <addr>`, trim again,
    lower-case. Idempotent: every unwrapping leaves text that no rule matches again.
    """
    raw = values.cast(pl.String).fill_null("")
    trimmed = raw.str.to_lowercase().str.strip_chars(STRIP)
    return _unwrap_special(trimmed, raw.gather).rename(values.name)


def normalise_arrow(values: pa.Array | pa.ChunkedArray, name: str = "email") -> pl.Series:
    """`normalise_series` for an Arrow column, as the scan and the join read them.

    Text that is all ASCII (nearly every lead list) takes pyarrow's ASCII kernels, faster than
    polars' Unicode ones and the same result: ASCII lower-cases and trims alike
    under every rule, and no other STRIP character can occur in it.
    """
    if not _all_ascii(values):
        return normalise_series(_series(values)).rename(name)
    raw = pc.fill_null(values, "")
    trimmed = pl.Series(name, pc.ascii_trim(pc.ascii_lower(raw), characters=_ASCII_STRIP))
    if not _holds_any(values, b"<:"):  # no `Name <addr>`, no `mailto:`: nothing to unwrap
        return trimmed

    def originals(rows: pl.Series) -> pl.Series:
        return pl.Series(name, raw.take(rows.to_arrow()))

    return _unwrap_special(trimmed, originals)


def _all_ascii(values: pa.Array | pa.ChunkedArray) -> bool:
    """Plain Arrow text whose character data holds no byte over 0x7F."""
    if not is_text(values.type, views=False):  # a view array has no offsets buffer
        return False
    return all(not len(text) or text.max() <= 0x7F for text in _character_data(values))


def _holds_any(values: pa.Array | pa.ChunkedArray, characters: bytes) -> bool:
    """Whether any of these ASCII characters is in the (plain string) character data. A byte
    search per character, faster than asking polars row by row; nearly every batch of a lead
    list has neither."""
    return any((text == c).any() for text in _character_data(values) for c in characters)


def _character_data(values: pa.Array | pa.ChunkedArray) -> Iterator[np.ndarray]:
    """Each chunk's own character bytes: a slice of a bigger array (a Parquet row group cut
    into batches) shares its parent's buffer, which must not be searched once per slice."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        offsets_buffer, data = chunk.buffers()[1:3]
        if data is None or not len(chunk):
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(offsets_buffer, width)
        first, last = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
        yield np.frombuffer(data, np.uint8)[first:last]


def _unwrap_special(trimmed: pl.Series, originals: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """Trimmed, lower-cased emails with the few an unwrapping rule could change redone.

    They are found by two literal searches in the lower-cased text (lower-casing touches no
    character the rules look at), and only they take the regex path, from their original text
    (`originals(rows)`) so that a Greek final sigma lower-cases as it does once unwrapped.
    """
    special = trimmed.str.contains("<", literal=True) | trimmed.str.contains(
        "mailto:", literal=True
    )
    if not special.any():
        return trimmed
    rows = special.arg_true()
    original = originals(rows).str.strip_chars(STRIP).to_frame("s")
    unwrapped = original.select(_unwrap_expr(pl.col("s")).str.to_lowercase()).to_series()
    return trimmed.scatter(rows, unwrapped)


def email_class_expr(normalised: pl.Expr) -> pl.Expr:
    """EmailClass codes (Int8) for an expression of normalised emails."""
    return (
        pl.when(normalised == "")
        .then(pl.lit(EmailClass.BLANK, pl.Int8))
        .when(normalised.str.contains(_VALID))
        .then(pl.lit(EmailClass.VALID, pl.Int8))
        .otherwise(pl.lit(EmailClass.INVALID, pl.Int8))
    )


def _series(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (is_text(values.type) or pa.types.is_null(values.type)):
        values = values.cast(pa.string())
    series = pl.Series("email", values)
    return series.cast(pl.String) if series.dtype != pl.String else series


def normalise_emails(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Normalise a column of emails at once; nulls become "".

    >>> normalise_emails(pa.array([" A@B.co ", None, "mailto:x@y.z"])).to_pylist()
    ['a@b.co', '', 'x@y.z']
    """
    return normalise_arrow(values).to_arrow().cast(pa.string())


def classify_emails(normalised: pa.Array | pa.ChunkedArray) -> pa.Int8Array:
    """EmailClass codes for already-normalised emails (BLANK=0, INVALID=1, VALID=2)."""
    out = _series(normalised).to_frame().select(email_class_expr(pl.col("email")))
    return out.to_series().to_arrow()


def normalise_email(text: str) -> str:
    """Trim, lower-case, unwrap `mailto:` and `Name <addr>`.

    >>> normalise_email("mailto:Sales@Acme.com?subject=Hi")
    'sales@acme.com'
    """
    result = normalise_emails(pa.array([text], pa.string()))[0].as_py()
    assert isinstance(result, str)
    return result


def is_valid_email(normalised: str) -> bool:
    """False only for what can never be deliverable: the API decides the rest.

    Rejected: no single `@`, an empty local part or domain, whitespace or control characters,
    a domain without a dot or with an empty label.

    >>> is_valid_email("a+tag@b.co"), is_valid_email("a@b"), is_valid_email("a b@c.de")
    (True, False, False)
    """
    code = classify_emails(pa.array([normalised], pa.string()))[0].as_py()
    return bool(code == EmailClass.VALID)


# Header names that mean "the email", compared after dropping case, spaces, `_` and `-`.
_SYNONYMS = {
    "email",
    "emails",
    "emailaddress",
    "emailaddresses",
    "mail",
    "email1",
    "primaryemail",
    "workemail",
    "businessemail",
    "personalemail",
    "contactemail",
    "companyemail",
    "emailid",
    "ecorreo",
    "correo",
    "correoelectronico",
    "courriel",
    "adressemail",
    "adresseemail",
}


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name).lower()


def find_email_column(
    columns: Sequence[str], samples: dict[str, list[str]]
) -> tuple[str | None, list[str]]:
    """The email column by header synonym, else by content; `(None, tied)` when ambiguous.

    By content means: the column where the most non-blank sampled values are valid addresses
    once normalised, if at least half are. `samples` maps a column name to some of its text
    values. Returns the chosen name and an empty list, or None and the candidates that tie
    (none found: an empty list).
    """
    by_name = [c for c in columns if _squash(c) in _SYNONYMS]
    if len(by_name) == 1:
        return by_name[0], []
    if len(by_name) > 1:
        exact = [c for c in by_name if _squash(c) in {"email", "emailaddress"}]
        if len(exact) == 1:
            return exact[0], []
        return None, by_name
    # By content: the share of non-blank values that are valid addresses. Not "contains an @":
    # handles (`@ana`) and `n/a` placeholders would then outvote a real, patchy email column.
    scores: dict[str, float] = {}
    for name in columns:
        values = normalise_emails(pa.array(samples.get(name, []), pa.string()))
        classes = classify_emails(values).to_numpy(zero_copy_only=False)
        given = classes != EmailClass.BLANK
        if given.any():
            scores[name] = float((classes == EmailClass.VALID).sum() / given.sum())
    best = max(scores.values(), default=0.0)
    if best < 0.5:
        return None, []
    top = [c for c, s in scores.items() if s == best]
    return (top[0], []) if len(top) == 1 else (None, top)

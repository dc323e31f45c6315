"""Email normalisation, syntax classes and email-column detection."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ample_batch.files.emails import (
    STRIP,
    EmailClass,
    _unwrap_expr,
    classify_emails,
    find_email_column,
    is_valid_email,
    normalise_arrow,
    normalise_email,
    normalise_emails,
    normalise_series,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("mailto:Sales@Acme.com", "sales@acme.com"),
        ("MAILTO:sales@acme.com?subject=Hello%20there", "sales@acme.com"),
        ("mailto: mailto:x@y.co", "x@y.co"),
        ("Jane Doe <JANE@x.co>", "jane@x.co"),
        ('"Doe, Jane" <jane@x.co>', "jane@x.co"),
        ("Name <mailto:A@B.co?subject=x>", "a@b.co"),
        ("\u200ba@b.co\u00a0", "a@b.co"),
        ("ana+tag@proton.me", "ana+tag@proton.me"),
        ("NA", "na"),
        ("", ""),
        ("   ", ""),
        ("<>", ""),
        ("x <y <a@b.c>>", "x <y <a@b.c>>"),
    ],
)
def test_normalise_email(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


def test_normalise_emails_is_vectorised_with_nulls_as_blank() -> None:
    out = normalise_emails(pa.array([" A@B.co ", None, "mailto:x@y.z"]))
    assert out.type == pa.string()
    assert out.to_pylist() == ["a@b.co", "", "x@y.z"]
    chunked = normalise_emails(pa.chunked_array([["A@B.co"], ["C@D.co"]]))
    assert chunked.to_pylist() == ["a@b.co", "c@d.co"]
    dictionary = normalise_emails(pa.array(["X@Y.co", "X@Y.co"]).dictionary_encode())
    assert dictionary.to_pylist() == ["x@y.co", "x@y.co"]


@pytest.mark.parametrize(
    "address",
    [
        "a@b.co",
        "a+tag@b.co",
        "first.last@sub.example.co.uk",
        "o'brien@x.ie",
        "ü@bücher.de",
        "a@[1.2.3.4]",
        "x@xn--bcher-kva.de",
    ],
)
def test_valid(address: str) -> None:
    assert is_valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        "na",
        "a@b",
        "@b.co",
        "a@",
        "a@@b.co",
        "a@b@c.co",
        "a b@c.co",
        "a@b..co",
        "a@.b.co",
        "a@b.co.",
        "a@b.c o",
        "a\x01@b.co",
        "a@b\u200b.co",
    ],
)
def test_invalid(address: str) -> None:
    assert not is_valid_email(address)


def test_classify_emails() -> None:
    codes = classify_emails(pa.array(["", "na", "a@b.co"]))
    assert codes.to_pylist() == [EmailClass.BLANK, EmailClass.INVALID, EmailClass.VALID]


_PIECES = [
    *"aAbZ@.<> :?+\"'",
    "mailto:",
    "MAILTO:",
    "\u00a0",
    "\u200b",
    "\t",
    "\n",
    "é",
    "İ",
    "ß",
    "Σ",
]
emails_text = st.lists(st.sampled_from(_PIECES), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(emails_text, min_size=1, max_size=20))
def test_normalisation_is_idempotent(values: list[str]) -> None:
    once = normalise_series(pl.Series(values, dtype=pl.String))
    assert normalise_series(once).to_list() == once.to_list()


def _reference_normalise(values: list[str]) -> list[str]:
    """The rule as the docs state it, applied to every value: trim, unwrap, lower-case."""
    frame = pl.Series("s", values, dtype=pl.String).str.strip_chars(STRIP).to_frame()
    return frame.select(_unwrap_expr(pl.col("s")).str.to_lowercase()).to_series().to_list()


@settings(max_examples=300, deadline=None)
@given(st.lists(emails_text, min_size=1, max_size=20))
def test_fast_path_matches_the_rule(values: list[str]) -> None:
    # Only values with `<` or `mailto:` take the regex path; the result must not depend on it.
    assert normalise_series(pl.Series(values, dtype=pl.String)).to_list() == (
        _reference_normalise(values)
    )


ascii_text = st.lists(
    st.sampled_from([*"aAbZ@.<> :?+\"'\t\n\r\x0b\x0c", "mailto:", "MAILTO:"]), max_size=20
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.none() | ascii_text | emails_text, min_size=1, max_size=20),
    st.sampled_from([pa.string(), pa.large_string()]),
)
def test_arrow_ascii_path_matches_the_series_path(
    values: list[str | None], kind: pa.DataType
) -> None:
    # All-ASCII batches take pyarrow's ASCII kernels; the result must be the same.
    expected = normalise_series(pl.Series(values, dtype=pl.String)).to_list()
    assert normalise_arrow(pa.array(values, kind)).to_list() == expected
    chunked = pa.chunked_array([pa.array(values[:1], kind), pa.array(values[1:], kind)])
    assert normalise_arrow(chunked).to_list() == expected
    # A slice (a batch of a Parquet row group) is judged by its own text, not its parent's.
    padded = pa.array(["Ünïcode <x@y.z>", *values, "mailto:Ω@x.gr"], kind)
    assert normalise_arrow(padded.slice(1, len(values))).to_list() == expected


def test_final_sigma_after_mailto_lowercases_as_unwrapped() -> None:
    assert normalise_email("MAILTO:Σ@x.gr") == _reference_normalise(["MAILTO:Σ@x.gr"])[0]


def test_scalar_and_vector_agree() -> None:
    values = ["A@B.co", " mailto:x@y.co ", "Jo <J@X.CO>", "İstanbul@x.co"]
    assert [normalise_email(v) for v in values] == normalise_emails(pa.array(values)).to_pylist()


@pytest.mark.parametrize(
    ("columns", "samples", "expected"),
    [
        (["Name", "Email"], {}, ("Email", [])),
        (["Name", "E-mail Address"], {}, ("E-mail Address", [])),
        (["email_address", "x"], {}, ("email_address", [])),
        (["Name", "Work Email", "Personal Email"], {}, (None, ["Work Email", "Personal Email"])),
        (["Email", "Work Email"], {}, ("Email", [])),
        (
            ["Name", "contact"],
            {"contact": ["a@b.co", "c@d.co", ""], "Name": ["x"]},
            ("contact", []),
        ),
        (["a", "b"], {"a": ["a@b.co"], "b": ["c@d.co"]}, (None, ["a", "b"])),
        (  # handles contain an @ in every cell, but no address
            ["Name", "Contact", "Twitter"],
            {"Contact": ["a@acme.com", "n/a", "c@acme.com"], "Twitter": ["@ana", "@bob", "@cy"]},
            ("Contact", []),
        ),
        (["a"], {"a": ["x@y", "@z", "q@r.co"]}, (None, [])),  # only a third valid
        (["a", "b"], {"a": ["x"], "b": ["y"]}, (None, [])),
    ],
)
def test_find_email_column(
    columns: list[str], samples: dict[str, list[str]], expected: tuple[str | None, list[str]]
) -> None:
    assert find_email_column(columns, samples) == expected

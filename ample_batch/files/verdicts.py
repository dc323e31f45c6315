"""The verdict lookup: `Verdicts` as the pipeline reads them, indexed to find each row's email.

The lookup is built once per file: the sorted 64-bit hashes of the normalised emails, searched
per batch, each hit confirmed by comparing the strings, so memory follows the number of
verdicts, not rows. Only the documented vocabulary comes out of it: an unknown result string
becomes `unknown`, so no cell the join adds can start a formula. The figures behind this
module's choices are in docs/design-measurements.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .emails import EmailClass, email_class_expr, normalise_arrow, normalise_series
from .spec import is_text

__all__ = ["RESULTS", "VerdictLookup", "Verdicts"]


RESULTS = ("deliverable", "risky", "unknown", "undeliverable", "failed", "invalid_syntax")
"""What a verdict may say: the API's four results, `failed` (no verdict after every retry) and
`invalid_syntax` (an email the API refused as malformed)."""


_OUT = (*RESULTS, "no_email", "pending")


_CODE = {name: i for i, name in enumerate(_OUT)}


_UNKNOWN, _INVALID, _BLANK = _CODE["unknown"], _CODE["invalid_syntax"], _CODE["no_email"]


_CA_NULL = 2


_CHUNK = 1 << 18


def _concat(chunks: list[pa.Array]) -> pa.Array:
    if len(chunks) == 1:
        return chunks[0]
    try:
        return pa.concat_arrays(chunks)
    except pa.ArrowInvalid:  # over 2 GiB of text in one column
        return pa.concat_arrays([c.cast(pa.large_string()) for c in chunks])


@dataclass(frozen=True, eq=False)
class Verdicts:
    """Results by normalised email, as the pipeline reads them from its store."""

    email: pa.StringArray
    """Normalised emails, one row each (a repeated email: the last row wins)."""
    result: pa.StringArray
    """One of `RESULTS`; anything else is written `unknown`."""
    catch_all: pa.BooleanArray
    """Whether the domain accepts every address; null when the API did not say."""
    normalised: bool = False
    """The emails are already as `scan` gives them (normalised, valid), as the pipeline's are:
    the join then skips normalising and checking them again."""

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, str, bool | None]], *, normalised: bool = False
    ) -> Verdicts:
        """Build from `(email, result, catch_all)` tuples, e.g. a SQLite cursor.

        >>> len(Verdicts.from_rows([("a@b.co", "risky", None)]))
        1
        """
        chunks: tuple[list[pa.Array], list[pa.Array], list[pa.Array]] = ([], [], [])
        emails: list[str] = []
        results: list[str] = []
        catch: list[bool | None] = []

        def flush() -> None:
            chunks[0].append(pa.array(emails, pa.string()))
            chunks[1].append(pa.array(results, pa.string()))
            chunks[2].append(pa.array(catch, pa.bool_()))
            emails.clear()
            results.clear()
            catch.clear()

        # Arrow arrays chunk by chunk: millions of Python strings never pile up.
        for email, result, catch_all in rows:
            emails.append(email)
            results.append(result)
            catch.append(None if catch_all is None else bool(catch_all))
            if len(emails) >= _CHUNK:
                flush()
        flush()
        email, result, catch_all = (_concat(c) for c in chunks)
        return cls(email, result, catch_all, normalised=normalised)

    def __len__(self) -> int:
        return len(self.email)


class VerdictLookup:
    """Normalised email -> its verdict, built once, probed batch by batch.

    Held compactly: the emails' 64-bit hashes, sorted, with a table of where each run of equal
    leading bits starts (about one hash per run, so a probe reads one or two), each hash's two
    codes, and its row in the email text, which confirms every hit (equal hashes must also be
    equal strings). The text is the caller's own array when normalising changed nothing, as
    for the pipeline's verdicts.

    >>> lookup = VerdictLookup(Verdicts.from_rows([("ana@acme.com", "risky", True)]))
    >>> result, catch_all = lookup.columns(pa.array(["ANA@acme.com", "x"]), "pending", text=True)
    >>> result.to_pylist(), catch_all.to_pylist()
    (['risky', 'invalid_syntax'], ['true', ''])
    """

    def __init__(self, verdicts: Verdicts) -> None:
        if not (len(verdicts.email) == len(verdicts.result) == len(verdicts.catch_all)):
            raise ValueError("Verdicts: email, result and catch_all differ in length")
        given = pl.Series("key", verdicts.email, dtype=pl.String)
        key = given if verdicts.normalised else normalise_series(given)
        # The caller's own array where normalising changed nothing (the pipeline's verdicts).
        # Not polars' views: faster to confirm, but 16 bytes a verdict for the whole join.
        self.keys: pa.Array | pa.ChunkedArray = (
            verdicts.email if key is given or given.equals(key) else key.to_arrow()
        )
        result = verdicts.result
        if not is_text(result.type, views=False):
            result = result.cast(pa.string())  # index_in has no kernel for string views
        known = pc.index_in(result, value_set=pa.array(RESULTS, pa.string()))
        code = pl.Series("code", pc.fill_null(known, _UNKNOWN).cast(pa.int8()))
        catch_all = pl.Series("ca", verdicts.catch_all, dtype=pl.Boolean)
        ca = catch_all.cast(pl.Int8).fill_null(_CA_NULL)
        frame = pl.DataFrame([key, code, ca.alias("ca")]).with_row_index("row")
        if not verdicts.normalised:
            # Only valid emails can match a row that is not blank or invalid_syntax, so a hit
            # needs no syntax check.
            frame = frame.filter(email_class_expr(pl.col("key")) == EmailClass.VALID)
        deduplicated = False
        for seed in range(1, 100):
            # One parallel polars sort carries the codes along: faster than numpy's argsort
            # and three gathers.
            table = frame.select(
                pl.col("key").hash(seed=seed).alias("hash"), "row", "code", "ca"
            ).sort("hash")
            hashes = table.get_column("hash").to_numpy()
            if not (hashes[1:] == hashes[:-1]).any():
                break
            if not deduplicated:  # most likely a repeated email: keep its last verdict
                frame = frame.unique(subset="key", keep="last", maintain_order=True)
                deduplicated = True
            # else two emails share a 64-bit hash: try the next seed
        else:  # pragma: no cover - needs 98 colliding seeds
            raise RuntimeError("could not hash the verdicts without collisions")
        self.seed, self.hashes = seed, hashes
        bits = max(1, len(hashes).bit_length() - 1)
        self.shift = np.uint64(64 - bits)
        runs = np.bincount((hashes >> self.shift).astype(np.intp), minlength=1 << bits)
        # 32-bit: half the memory, and a probe reads it faster (a Series holds < 2**32 rows).
        self.starts = np.zeros(len(runs) + 1, dtype=np.uint32)
        np.cumsum(runs, out=self.starts[1:])
        self.rows = table.get_column("row").to_numpy()
        self.codes = table.get_column("code").to_numpy()
        self.ca = table.get_column("ca").to_numpy()

    def find(self, keys: pl.Series) -> np.ndarray:
        """Position of each key in the lookup, -1 where it has no verdict."""
        hashes = keys.hash(seed=self.seed).to_numpy()
        run = (hashes >> self.shift).astype(np.intp)
        first, end = self.starts[run], self.starts[run + 1]
        positions = np.full(len(keys), -1, dtype=np.int64)
        probing = np.flatnonzero(first < end)
        at = first[probing]
        while len(probing):  # step every unmatched probe to the next hash of its run
            match = self.hashes[at] == hashes[probing]
            positions[probing[match]] = at[match]
            at += 1
            more = ~match & (at < end[probing])
            probing, at = probing[more], at[more]
        found = np.flatnonzero(positions >= 0)
        if len(found):  # confirm: equal hashes must also be equal strings
            theirs = self.keys.take(self.rows[positions[found]])
            mine = keys.gather(found).to_arrow().cast(theirs.type)
            same = pc.equal(theirs, mine).to_numpy(zero_copy_only=False)
            positions[found[~same]] = -1
        return positions

    def columns(
        self, values: pa.Array | pa.ChunkedArray, missing: str, *, text: bool, sent: bool = False
    ) -> list[pa.Array]:
        """`email_result` and `email_catch_all` for one batch's raw email cells, and with
        `sent` the address as the API gets it (see `join.enrich_batches`)."""
        keys = normalise_arrow(values, "k")
        positions = self.find(keys)
        found = positions >= 0
        valid = found.copy()  # the lookup holds valid emails only
        codes = np.full(len(keys), _CODE[missing], dtype=np.int8)
        codes[found] = self.codes[positions[found]]
        ca = np.full(len(keys), _CA_NULL, dtype=np.int8)
        ca[found] = self.ca[positions[found]]
        rest = np.flatnonzero(~found)
        if len(rest):  # the rows without a verdict: blank, invalid or not yet validated
            classes = keys.gather(rest).to_frame().select(email_class_expr(pl.col("k")))
            kind = classes.to_series().to_numpy()
            codes[rest[kind == EmailClass.INVALID]] = _INVALID
            codes[rest[kind == EmailClass.BLANK]] = _BLANK
            valid[rest[kind == EmailClass.VALID]] = True
        result = pa.array(_OUT, pa.string()).take(pa.array(codes))
        if text:
            catch = pa.array(["false", "true", ""], pa.string()).take(pa.array(ca))
        else:
            catch = pa.array([False, True, None], pa.bool_()).take(pa.array(ca))
        if not sent:
            return [result, catch]
        address = keys.to_arrow().cast(pa.string())
        unsent = pa.scalar("" if text else None, pa.string())
        return [result, catch, pc.if_else(pa.array(valid), address, unsent)]

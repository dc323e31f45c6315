"""Sniffing a file's head: format, compression, text encoding, CSV delimiter and line ending.

Cheap by design: only the first MiB (decompressed, for gzip) is looked at. `read.inspect_input`
puts the answers in an `InputSpec`; the full passes then trust them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from pathlib import Path

from ..errors import InputError
from .spec import DELIMITERS, SUFFIXES, TEXT_SUFFIXES

__all__ = [
    "HEAD_BYTES",
    "decode_head",
    "dialect",
    "gunzip_head",
    "looks_binary",
    "newline",
    "sniff",
]


HEAD_BYTES = 1 << 20
"""How much of a file inspection reads."""


_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


_BINARY_SUFFIXES = {
    ".parquet": "Parquet",
    ".pq": "Parquet",
    ".xlsx": "XLSX",
    ".xlsm": "XLSX",
    ".gz": "gzip",
}


def sniff(path: Path, head: bytes) -> str:
    """`parquet`, `xlsx`, `gzip` or `text`, from the bytes first and the name second."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        if suffix in (".xlsx", ".xlsm") or b"xl/" in head[:4096] or b"[Content_Types]" in head:
            return "xlsx"
        raise InputError(f"{path.name}: a zip archive, not a lead file; unzip it first")
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if suffix == ".xls" or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError(f"{path.name}: old binary .xls is not supported; save as .xlsx or .csv")
    # A name that promises binary data over bytes that are text (a CSV saved as .parquet, a
    # .csv.gz the browser already unpacked) is read as the CSV it is; `lying_name` warns.
    text = b"\x00" not in head
    if suffix in (".parquet", ".pq") and not text:
        raise InputError(f"{path.name}: not a Parquet file (no PAR1 header); export it again")
    if suffix in (".xlsx", ".xlsm") and not text:
        raise InputError(f"{path.name}: not an XLSX workbook (not a zip archive); save it again")
    if name.endswith(".gz") and not text:
        raise InputError(f"{path.name}: not gzip data; check the file")
    if lying_name(path):
        return "text"
    if suffix not in TEXT_SUFFIXES:
        raise InputError(f"{path.name}: unknown file type {suffix or '(no extension)'}; {SUFFIXES}")
    return "text"


def lying_name(path: Path) -> str | None:
    """For a file read as text: a warning when its name promises a binary format."""
    claimed = _BINARY_SUFFIXES.get(path.suffix.lower())
    return f"{path.name} is named like {claimed} but holds text: read as CSV" if claimed else None


def gunzip_head(path: Path) -> tuple[bytes, bool]:
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            complete = not f.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path.name}: the gzip data is corrupt or truncated ({exc})") from exc
    if not head:
        raise InputError(f"{path.name}: the file is empty once decompressed")
    return head, complete


def decode_head(
    path: Path, head: bytes, complete: bool, encoding: str | None
) -> tuple[str, str, bool, list[str]]:
    """Text of the head, the codec chosen, whether there was a BOM, and warnings."""
    warnings: list[str] = []
    bom_codec = next((c for b, c in _BOMS if head.startswith(b)), None)
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError as exc:
            raise InputError(
                f"unknown encoding {encoding!r}; try utf-8, cp1252 or latin-1"
            ) from exc
        if bom_codec and bom_codec != codec and not codec.startswith("utf-16"):
            warnings.append(
                f"the file starts with a {bom_codec} byte-order mark: read as {bom_codec}"
            )
            codec = bom_codec
        candidates = [codec]
    elif bom_codec:
        candidates = [bom_codec]
    else:
        if b"\x00" in head:
            raise InputError(f"{path.name}: binary data, not text (it has NUL bytes); {SUFFIXES}")
        candidates = ["utf-8", "cp1252", "latin-1"]
    first_bad = 0  # where UTF-8 failed: the warning names its line, as the scan's does
    for codec in candidates:
        try:
            text = codecs.getincrementaldecoder(codec)().decode(head, final=complete)
        except UnicodeDecodeError as exc:
            if encoding is not None:
                raise InputError(
                    f"{path.name}: byte 0x{head[exc.start]:02x} at offset {exc.start} is not "
                    f"valid {codec}; pass the file's real encoding with --encoding (e.g. cp1252)"
                ) from exc
            first_bad = first_bad or exc.start
            continue
        if codec != candidates[0] and encoding is None:
            line = head.count(b"\n", 0, first_bad) + 1
            warnings.append(f"not UTF-8 (line {line}): read as {codec}")
        text = text.removeprefix("\ufeff")
        return text, codec, bom_codec is not None, warnings
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def looks_binary(text: str) -> bool:
    controls = sum(
        1 for ch in text[:65536] if (ord(ch) < 32 and ch not in "\t\r\n") or 0x7F <= ord(ch) < 0xA0
    )
    return controls > max(2, len(text[:65536]) // 200)


def dialect(path: Path, text: str, complete: bool) -> str:
    """The delimiter whose parse of the head gives the most consistent, widest rows."""
    if not complete:  # drop the last, probably cut, record
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    preferred = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    best: tuple[float, int, int] | None = None
    chosen = preferred
    for rank, delimiter in enumerate(sorted(DELIMITERS, key=lambda d: d != preferred)):
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            records = [r for _, r in zip(range(200), reader, strict=False) if r]
        except csv.Error:
            continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        body = records[1:] or records
        agree = round(sum(1 for r in body if len(r) == width) / len(body), 2)
        if best is None or (agree, width, -rank) > best:
            best, chosen = (agree, width, -rank), delimiter
    return chosen


def newline(text: str) -> str:
    i = next((i for i, ch in enumerate(text) if ch in "\r\n"), -1)
    if i < 0 or text[i] == "\n":
        return "\n"
    return "\r\n" if text[i + 1 : i + 2] == "\n" else "\r"

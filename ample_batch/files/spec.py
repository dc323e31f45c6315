"""What an input file is (`InputSpec`) and the names and sizes every reader shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["csv", "parquet", "xlsx"]


TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")


SUFFIXES = "use .csv, .tsv, .txt, .csv.gz, .parquet or .xlsx"


DELIMITERS = (",", ";", "\t", "|")


DEFAULT_BATCH_ROWS = 65_536


EMAIL_BATCH_ROWS = 1 << 18
"""Rows per batch of the email column alone (the scan): about 7 MB of text."""


CSV_BLOCK = 2 << 20
"""CSV is parsed in blocks of this many bytes: about 11,000 rows of a 190-byte lead list."""


RESULT_COLUMN = "email_result"
"""The first column appended to every output row: the email's verdict."""


CATCH_ALL_COLUMN = "email_catch_all"
"""The second appended column: whether the email's domain accepts every address."""


OUTPUT_COLUMNS = (RESULT_COLUMN, CATCH_ALL_COLUMN)
"""The appended columns, in order; an input that already has one is refused."""


@dataclass(frozen=True, kw_only=True)
class SplitFile:
    """One file `--split` wrote (here, not in `split`: the summary names it without pyarrow)."""

    path: str
    """Where it is, as an absolute path."""
    rows: int
    """How many rows it holds: the output's rows with this verdict."""


def is_text(t: pa.DataType, *, views: bool = True, dictionaries: bool = False) -> bool:
    """Whether `t` is Arrow text: string, large_string or (unless `views=False`) string_view;
    with `dictionaries=True`, also a dictionary of text (a categorical column).

    `views=False` is for code that reads the offsets buffer or calls a kernel that has none
    for string views.

    >>> import pyarrow as pa
    >>> is_text(pa.large_string()), is_text(pa.string_view(), views=False), is_text(pa.binary())
    (True, False, False)
    >>> is_text(pa.dictionary(pa.int32(), pa.string()), dictionaries=True)
    True
    """
    import pyarrow as pa  # not at the top: the CLI may import spec's names without pyarrow

    if dictionaries and pa.types.is_dictionary(t):
        t = t.value_type
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or (views and pa.types.is_string_view(t))
    )


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What `inspect_input` found out about an input file; every later pass trusts it."""

    path: Path
    """The input file, as given."""
    format: Format
    """`csv` (also .tsv, .txt, .csv.gz), `parquet` or `xlsx`: from the content, not the name."""
    delimiter: str | None = None
    """The CSV field separator (`,` `;` tab `|`); None for Parquet and XLSX."""
    encoding: str | None = None
    """The CSV's text encoding, a Python codec name (`utf-8`, `cp1252`, ...); None otherwise."""
    bom: bool = False
    """The CSV started with a byte-order mark; CSV output then starts with a UTF-8 one."""
    encoding_guessed: bool = False
    """`encoding` is UTF-8 only because the head decoded as UTF-8 (no --encoding, no BOM):
    bytes past the head that are not make the scan read the file again as cp1252."""
    compression: Literal["gzip"] | None = None
    """`gzip` for a .csv.gz; None otherwise."""
    sheet: str | None = None
    """The XLSX sheet read; None for CSV and Parquet."""
    sheet_in_identity: bool = False
    """`sheet` is not the one the workbook gives without --sheet, so it is part of the
    job's identity (`identity_sheet`): two sheets of one workbook are two jobs."""
    email_column: str
    """The header of the column holding the email."""
    columns: list[str]
    """Every column's header, in order (CSV headers may repeat)."""
    warnings: list[str] = field(default_factory=list)
    """Things the user should know, e.g. `not UTF-8: read as cp1252`."""
    newline: str = "\n"
    """The CSV's line ending (`\\n`, `\\r\\n` or `\\r`), reused when writing CSV."""
    email_index: int = 0
    """Position of the email column in `columns`."""
    skip_lines: int = 0
    """Blank lines before the CSV header, skipped."""
    rows_hint: int | None = None
    """The row count when the format stores it (Parquet, XLSX); None for CSV."""

    @property
    def identity_sheet(self) -> str | None:
        """The sheet as the job's id names it: None for the sheet read without --sheet (so
        the ids of jobs made before sheets were told apart stay the same), else its name.

        >>> InputSpec(path=Path("b.xlsx"), format="xlsx", sheet="West", sheet_in_identity=True,
        ...           email_column="Email", columns=["Email"]).identity_sheet
        'West'
        """
        return self.sheet if self.sheet_in_identity else None

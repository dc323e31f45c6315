"""The data-frame types `validate_frame` takes, to Arrow for the pipeline and back.

    >>> frame = pa.table({"email": ["ana@acme.com"], "score": [7]})
    >>> kind = frame_kind(frame)
    >>> kind, text_table(frame, kind).schema.types   # what the pipeline reads
    ('arrow', [DataType(string), DataType(null)])
    >>> result, catch_all = pa.chunked_array([["deliverable"]]), pa.chunked_array([[False]])
    >>> with_verdicts(frame, kind, result, catch_all).column_names
    ['email', 'score', 'email_result', 'email_catch_all']

Only text columns can hold the email, so only they are copied; every other column becomes
an all-null one of the same name (the email column's detection and the error messages see
every name, and no exotic dtype has to survive Parquet). The verdicts are then appended to
the caller's own frame, whose columns, dtypes and index are never converted. pandas and
polars are imported only for a frame of theirs, found by its type's module.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from ..files.spec import CATCH_ALL_COLUMN, RESULT_COLUMN, is_text

FrameKind = Literal["pandas", "polars", "arrow"]


def frame_kind(frame: object) -> FrameKind:
    """Which supported type `frame` is; TypeError for any other."""
    module = type(frame).__module__.split(".")[0]
    if isinstance(frame, pa.Table):
        return "arrow"
    if module == "pandas" and type(frame).__name__ == "DataFrame":
        return "pandas"
    if module == "polars" and type(frame).__name__ == "DataFrame":
        return "polars"
    raise TypeError(
        "validate_frame() takes a pandas.DataFrame, a polars.DataFrame or a pyarrow.Table, "
        f"not {type(frame).__module__}.{type(frame).__name__}"
    )


def text_table(frame: Any, kind: FrameKind) -> pa.Table:
    """The frame's text columns as Arrow, every other column as nulls, every name kept."""
    if kind == "arrow":
        names, columns = list(frame.column_names), list(frame.columns)
    elif kind == "polars":
        names = list(frame.columns)
        columns = [_polars_text(frame.get_column(name)) for name in names]
    else:
        names = [str(name) for name in frame.columns]
        columns = [_pandas_text(frame.iloc[:, i]) for i in range(frame.shape[1])]
    rows = len(frame)
    kept = [
        c if c is not None and is_text(c.type, dictionaries=True) else pa.nulls(rows)
        for c in columns
    ]
    return pa.Table.from_arrays(kept, names=names)


def _polars_text(series: Any) -> pa.Array | pa.ChunkedArray | None:
    import polars as pl

    if series.dtype in (pl.String, pl.Categorical) or isinstance(series.dtype, pl.Enum):
        return series.to_arrow()
    return None


def _pandas_text(series: Any) -> pa.Array | None:
    import pandas as pd

    dtype = series.dtype
    if not (
        pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.StringDtype | pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        return None
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Mixed objects (text with numbers, say): each value as the text it prints as.
        return pa.array(
            [None if pd.isna(v) is True else str(v) for v in series.tolist()], pa.string()
        )


def with_verdicts(
    frame: Any,
    kind: FrameKind,
    result: pa.ChunkedArray,
    catch_all: pa.ChunkedArray,
    sent: tuple[str, pa.ChunkedArray] | None = None,
) -> Any:
    """`frame` with RESULT_COLUMN (text) and CATCH_ALL_COLUMN (nullable bool) appended, and
    `sent`'s column (text: the address as sent) after them when given."""
    texts = [(RESULT_COLUMN, result.cast(pa.string()))]
    if sent is not None:
        texts.append((sent[0], sent[1].cast(pa.string())))
    catch_all = catch_all.cast(pa.bool_())
    if kind == "arrow":
        out = frame.append_column(RESULT_COLUMN, texts[0][1])
        out = out.append_column(CATCH_ALL_COLUMN, catch_all)
        for name, column in texts[1:]:
            out = out.append_column(name, column)
        return out
    if kind == "polars":
        import polars as pl

        series = [pl.Series(RESULT_COLUMN, texts[0][1]), pl.Series(CATCH_ALL_COLUMN, catch_all)]
        return frame.with_columns(*series, *(pl.Series(name, c) for name, c in texts[1:]))
    import pandas as pd

    # Arrays, not Series: a Series would be aligned on the frame's index, not its row order.
    out = frame.copy(deep=False)
    out[RESULT_COLUMN] = texts[0][1].to_pandas().array
    out[CATCH_ALL_COLUMN] = pd.array(catch_all.to_pylist(), dtype="boolean")
    for name, column in texts[1:]:
        out[name] = column.to_pandas().array
    return out

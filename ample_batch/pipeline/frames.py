"""Data frames and plain lists of emails through the same pipeline as files.

    df = validate_frame(df, simulate=True)      # pandas, polars or pyarrow, same type back
    validate_emails(["ana@acme.com", ""])       # {"ana@acme.com": {"result": ..., ...}, ...}

The frame's text columns are written as Parquet under the state dir, at a path named by the
file's content hash, and validated as a file is: the job id comes from that path and content,
so the same frame resumes the same job (after a Stopped, say) and a second call is served from
the state without a credit. With `state_url` the file goes to a private temp dir instead
(nothing is written under the state dir; the shared state's job id is the content alone).
The verdicts are read back and appended to the caller's frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..files.appended import appended_columns
from ..files.output import default_output_path
from ..files.spec import CATCH_ALL_COLUMN, RESULT_COLUMN
from ..jobs.state_dir import make_state_dir
from .frame_types import FrameKind, frame_kind, text_table, with_verdicts
from .keywords import RUN_KEYWORDS, Call, RunKeywords, resolve, sent_column_name
from .prepare import state_of
from .sync import run_sync
from .validate import run_avalidate
from .wording import python_words

F = TypeVar("F")

FRAMES_DIR = "frames"
"""Under the (mode's) state dir: the frames being validated, as Parquet, while they are."""


class Verdict(TypedDict):
    """What `validate_emails` says of one email, as the file output's two columns do."""

    result: str
    """deliverable, undeliverable, risky, unknown, invalid_syntax, no_email or failed."""
    catch_all: bool | None
    """Whether the domain accepts every address; None with no verdict from the API."""


def validate_frame(
    frame: F,
    /,
    *,
    email_column: str | None = None,
    sent_column: str | bool | None = None,
    **options: Unpack[RunKeywords],
) -> F:
    """`frame` with `email_result` and `email_catch_all` appended: every row in its order,
    every column, dtype (and pandas index) as given. `sent_column=True` (or a name) also
    appends the address as sent, `email_sent`. Same options, state, cache, limits and
    exceptions as `validate`; works inside a running event loop (a notebook).

        validate_frame(pd.DataFrame({"email": ["ana@acme.com"]}), simulate=True)
    """
    with python_words():
        call = _call("validate_frame", options, sent_column)
        return run_sync(lambda stop: _frame(frame, email_column, call, stop))


async def avalidate_frame(
    frame: F,
    /,
    *,
    email_column: str | None = None,
    sent_column: str | bool | None = None,
    **options: Unpack[RunKeywords],
) -> F:
    """`validate_frame` on the caller's event loop."""
    with python_words():
        call = _call("avalidate_frame", options, sent_column)
        return await _frame(frame, email_column, call, None)


def validate_emails(emails: Iterable[str], /, **options: Unpack[RunKeywords]) -> dict[str, Verdict]:
    """Each given string's verdict, blanks and invalid syntax included, as the file output
    would say it; a string given twice is one key (and one credit).

        validate_emails(["ana@acme.com", "", "nope"], simulate=True)["nope"]
        # {'result': 'invalid_syntax', 'catch_all': None}
    """
    with python_words():
        call = _call("validate_emails", options)
        given = _strings(emails)
        return run_sync(lambda stop: _emails(given, call, stop))


async def avalidate_emails(
    emails: Iterable[str], /, **options: Unpack[RunKeywords]
) -> dict[str, Verdict]:
    """`validate_emails` on the caller's event loop."""
    with python_words():
        call = _call("avalidate_emails", options)
        return await _emails(_strings(emails), call, None)


def _call(caller: str, options: RunKeywords, sent_column: object = None) -> Call:
    # The input path is only known once the frame is written: a placeholder until then.
    call = resolve(caller, Path(FRAMES_DIR), options, allowed=RUN_KEYWORDS)
    sent = sent_column_name(sent_column)
    return call if sent is None else replace(call, options=replace(call.options, sent_column=sent))


def _strings(emails: Iterable[str]) -> list[str]:
    if isinstance(emails, str):
        raise TypeError("validate_emails() takes an iterable of emails, not one str")
    given = list(emails)
    for item in given:
        if not isinstance(item, str):
            raise TypeError(f"validate_emails() takes strings, not {type(item).__name__}")
    return given


async def _emails(given: list[str], call: Call, stop: asyncio.Event | None) -> dict[str, Verdict]:
    table = pa.table({"email": pa.array(given, pa.string())})
    out = await _frame(table, "email", call, stop)
    results = out.column(RESULT_COLUMN).to_pylist()
    flags = out.column(CATCH_ALL_COLUMN).to_pylist()
    return {
        email: {"result": r, "catch_all": c}
        for email, r, c in zip(given, results, flags, strict=True)
    }


async def _frame(frame: F, email_column: str | None, call: Call, stop: asyncio.Event | None) -> F:
    kind = frame_kind(frame)
    table = await asyncio.to_thread(text_table, frame, kind)
    sent = call.options.sent_column
    if table.num_rows == 0:
        return _appended(frame, kind, sent)
    with _frames_folder(call) as folder:
        path = await asyncio.to_thread(_write, table, folder)
        output = default_output_path(path)
        options = replace(call.options, input=path, output=output, email_column=email_column)
        with _named(path):
            summary = await run_avalidate(options, call.reporter, stop)
        call.done(summary)
        columns = list(appended_columns(sent))
        read = await asyncio.to_thread(pq.read_table, output, columns=columns)
        for done in (path, output):
            done.unlink(missing_ok=True)  # the verdicts are in the state; the copy is not needed
    sent_as = None if sent is None else (sent, read.column(2))
    enriched: F = with_verdicts(frame, kind, read.column(0), read.column(1), sent_as)
    return enriched


@contextlib.contextmanager
def _frames_folder(call: Call) -> Iterator[Path]:
    """Where the frame's file is written: `frames` under the (mode's) state dir; with a
    `state_url` a private temp dir, removed after, since nothing may be written under the
    state dir then (the shared state finds the job by content, not by path, so the same
    frame still resumes its job from any folder)."""
    if call.options.state_url is None:
        folder = state_of(call.options.api, call.options.state_dir).dir / FRAMES_DIR
        make_state_dir(folder)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="ample-batch-frame-") as private:
        yield Path(private)


def _appended(frame: F, kind: FrameKind, sent: str | None) -> F:
    """An empty frame with the columns a run would have appended."""
    empty = pa.chunked_array([], pa.string())
    flags = pa.chunked_array([], pa.bool_())
    appended: F = with_verdicts(frame, kind, empty, flags, None if sent is None else (sent, empty))
    return appended


def _write(table: pa.Table, folder: Path) -> Path:
    """`table` as `<content hash>.parquet` in `folder`: the same table, the same path."""
    fd, name = tempfile.mkstemp(prefix=".frame-", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        pq.write_table(table, tmp)
        digest = hashlib.blake2b(digest_size=20)
        with open(tmp, "rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        path = folder / f"frame-{digest.hexdigest()}.parquet"
        os.replace(tmp, path)  # identical bytes when it was there already
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Input errors that name the frame's file speak of the frame instead (and of the
    keyword, not the option, once `python_words` has them)."""
    try:
        yield
    except InputError as exc:
        path.unlink(missing_ok=True)  # refused before any job used it
        message = str(exc)
        if path.name not in message:
            raise
        message = message.replace(str(path), "the frame").replace(path.name, "the frame")
        raise type(exc)(message) from exc

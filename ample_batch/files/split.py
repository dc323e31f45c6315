"""`--split`: beside the output, one file per `email_result` value, written in the same pass.

    >>> split_path(Path("out/leads.validated.csv.gz"), "deliverable")
    PosixPath('out/leads.validated.deliverable.csv.gz')

Each file holds that verdict's rows, every column, in input order, in the output's format
(a .csv.gz output gives .csv.gz split files: the verdict goes before the whole extension).
Every row has a value (blank cells are `no_email`, bad syntax `invalid_syntax`), so the split
files together hold every row of the output exactly once.

The join streams its batches once: `Splitter.feed` hands each verdict's rows to a writer of
its own on a thread, so the input is not read again. Each file is written to a temporary file
beside it (`output.atomic`) and replaces its target only when the main output has too;
any failure removes every temporary file. Split files of verdicts the finished output no
longer holds (a previous run's) are removed then, so the folder always matches the output.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from .output import atomic, stem_and_extension, unwritten_as_stop, write_format
from .spec import RESULT_COLUMN, InputSpec, SplitFile

SPLIT_VALUES = (
    "deliverable",
    "risky",
    "unknown",
    "undeliverable",
    "failed",
    "invalid_syntax",
    "no_email",
)
"""Every `email_result` a complete output can hold (`pending` is partial output only)."""


def split_path(output: Path, value: str) -> Path:
    """`<output stem>.<value><ext>` beside `output`."""
    stem, ext = stem_and_extension(output)
    return output.with_name(f"{stem}.{value}{ext}")


def check_split_paths(spec: InputSpec, output: Path) -> None:
    """Refuse, before any work, a split file that would overwrite the input or a directory.

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.csv"))
    >>> check_split_paths(spec, Path("sample_data/leads.validated.csv"))
    """
    for value in SPLIT_VALUES:
        path = split_path(output, value)
        if path.resolve() == spec.path.resolve():
            raise InputError(
                f"{path}: --split would overwrite the input with its {value} rows; "
                "choose another -o"
            )
        if path.is_dir():
            raise InputError(f"{path}: is a directory, where --split writes its {value} rows")


_DONE = object()


class _Writer:
    """One split file: a thread writing what a bounded queue hands it to a temporary file."""

    def __init__(self, spec: InputSpec, target: Path, tmp: Path, appended: tuple[str, ...]) -> None:
        self.target = target
        self.rows = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(spec, tmp, appended), name="ample-batch-split", daemon=True
        )
        self._thread.start()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            yield item

    def _run(self, spec: InputSpec, tmp: Path, appended: tuple[str, ...]) -> None:
        try:
            with unwritten_as_stop(self.target):
                # A split file is the list to upload: the validated sheet alone.
                self.rows = write_format(
                    spec, self._batches(), self.target, tmp, appended=appended, keep_sheets=False
                )
        except BaseException as exc:  # handed to the feeding thread
            self.error = exc

    def put(self, item: Any) -> None:
        """Queue a batch (or the end), waiting for room; raises the writer's own error."""
        while True:
            self._raise()
            if not self._thread.is_alive():
                raise RuntimeError(f"the writer of {self.target.name} ended early")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Tell the writer there is no more and wait for its file to be complete."""
        self.put(_DONE)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop the writer and wait for it, so its temporary file can be removed."""
        self._stop.set()
        self._thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


class Splitter:
    """Hands each enriched batch's rows to one writer per `email_result` value.

    Used inside an ExitStack that the main output's write runs in: the stack keeps every
    split file's `atomic` context, so the files replace their targets when it closes cleanly
    and vanish when it unwinds with an error.

        with contextlib.ExitStack() as stack:
            splitter = Splitter(spec, output, appended, stack)
            ... splitter.feed(batch) for every batch, then splitter.finish() ...
        splitter.remove_stale()
    """

    def __init__(
        self,
        spec: InputSpec,
        output: Path,
        appended: tuple[str, ...],
        stack: contextlib.ExitStack,
    ) -> None:
        self.spec, self.output, self.appended, self._stack = spec, output, appended, stack
        self._writers: dict[str, _Writer] = {}

    def feed(self, batch: pa.RecordBatch) -> None:
        """Send each of the batch's verdicts its rows, in order."""
        results = batch.column(batch.schema.get_field_index(RESULT_COLUMN))
        for item in pc.value_counts(results).to_pylist():
            value = str(item["values"])
            part = (
                batch
                if item["counts"] == batch.num_rows
                else batch.filter(pc.equal(results, value))
            )
            self._writer(value).put(part)

    def _writer(self, value: str) -> _Writer:
        writer = self._writers.get(value)
        if writer is None:
            target = split_path(self.output, value)
            # Entered in this order, left in the other: an OSError renaming the file is said
            # as OutputUnwritten, and the writer has stopped before its file goes.
            self._stack.enter_context(unwritten_as_stop(target))
            tmp = self._stack.enter_context(atomic(target))
            writer = self._writers[value] = _Writer(self.spec, target, tmp, self.appended)
            self._stack.callback(writer.abort)
        return writer

    def finish(self) -> dict[str, SplitFile]:
        """Wait until every split file is complete (still under its temporary name)."""
        for writer in self._writers.values():
            writer.finish()
        return {
            value: SplitFile(path=str(writer.target.absolute()), rows=writer.rows)
            for value, writer in sorted(self._writers.items())
        }

    def remove_stale(self) -> list[str]:
        """Remove the split files of verdicts this output does not hold; their names."""
        removed = []
        for value in SPLIT_VALUES:
            path = split_path(self.output, value)
            if value not in self._writers and path.exists():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path.name)
        return removed

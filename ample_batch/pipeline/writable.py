"""The checks every file a run writes passes before any work: it can be written, and it is a
file of its own: not the input, not another file of the run, not one of the state's.

    written = [Written(Path("out.csv"), "-o", "-o"), Written(Path("s.json"), "--summary-json")]
    check_distinct(written, input=Path("leads.csv"), state_dir=Path("state"))

A run writes its output, the output's `.partial` twin, the `--split` files, `--report` and
the CLI's `--summary-json`; `ample-batch report -o` writes one page. Two names are one file
when they resolve to the same path (symlinks, `..`, relative paths) or, for a file that
exists, when they share a device and inode (a hard link).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import PathRefused
from ..options import SIMULATED_DIR

# The state's own files, in the state dir and in its `simulated/` store: the job database and
# the key ledgers, each with SQLite's side files, and everything under `locks/`.
_STATE_FILE = re.compile(r"^(ample-batch|ledger-.+)\.sqlite(-wal|-shm|-journal)?$")
_LOCKS_DIR = "locks"


class Written(NamedTuple):
    """One file a run writes, and how a message names it."""

    path: Path
    """The path as the user gave it (or as it is derived from one they gave)."""
    label: str
    """How a message names it: `-o`, `the output`, `--split's risky file`, `--report`."""
    option: str = ""
    """The option that moves it (`-o` for every file named after the output); `label` when
    empty."""

    def refused(self, why: str) -> PathRefused:
        """The one-line refusal of this file, ending with what to do."""
        return PathRefused(
            f"{self.label} {self.path}: {why}; choose another {self.option or self.label}",
            path=self.path,
        )


class _Identity(NamedTuple):
    resolved: Path
    inode: tuple[int, int] | None
    """(st_dev, st_ino) when the file exists: a hard link resolves to another path."""

    def same(self, other: _Identity) -> bool:
        return self.resolved == other.resolved or (
            self.inode is not None and self.inode == other.inode
        )


def _identity(path: Path) -> _Identity:
    try:
        st = os.stat(path)
    except OSError:
        return _Identity(path.resolve(), None)
    return _Identity(path.resolve(), (st.st_dev, st.st_ino))


def check_distinct(
    written: Sequence[Written],
    *,
    input: Path | None = None,
    state_dir: Path | None = None,
    first: int = 0,
) -> None:
    """PathRefused for the first of `written[first:]` that is the `input`, an earlier file of
    `written`, or one of the state's own files (its databases, ledgers and `locks/`, in
    `state_dir` or its `simulated/` store, or a hard link to one). Other files may go in the
    state dir: a frame's run keeps its input and output there, and a cron job may keep its
    summary beside its state. `state_dir` None: the state is not in a dir (PostgreSQL).

    >>> check_distinct([Written(Path("a.validated.csv"), "-o")], input=Path("a.csv"))
    >>> check_distinct([Written(Path("a.csv"), "-o")], input=Path("a.csv"))
    Traceback (most recent call last):
    ample_batch.errors.PathRefused: -o a.csv: is the input file a.csv; choose another -o
    """
    source = None if input is None else _identity(input)
    state = None if state_dir is None else _State(state_dir)
    seen = [_identity(item.path) for item in written[:first]]
    for item in written[first:]:
        this = _identity(item.path)
        if source is not None and this.same(source):
            raise item.refused(f"is the input file {input}")
        for earlier, known in zip(written, seen, strict=False):
            if this.same(known):
                raise item.refused(f"is also {earlier.label} {earlier.path}")
        if state is not None:
            why = state.refusal(this)
            if why is not None:
                raise item.refused(why)
        seen.append(this)


class _State:
    """The state dir as `check_distinct` sees it: its root and its own files."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.root = state_dir.resolve()
        self.files = {
            inode: path
            for path in self._own_files()
            if (inode := _identity(path).inode) is not None
        }

    def _own_files(self) -> Iterator[Path]:
        for folder in (self.root, self.root / SIMULATED_DIR):
            try:
                yield from (p for p in folder.iterdir() if _STATE_FILE.match(p.name))
                yield from (p for p in (folder / _LOCKS_DIR).iterdir())
            except OSError:
                continue  # no such store yet: nothing of it to overwrite

    def refusal(self, this: _Identity) -> str | None:
        """Why `this` may not be written, or None."""
        if _within(this.resolved, self.root) and self._owns(this):
            return f"is one of the state's own files, in the state dir {self.dir}"
        if this.inode is not None and this.inode in self.files:
            # A hard link: another name, the same database.
            own = self.dir / self.files[this.inode].relative_to(self.root)
            return f"is the same file as {own}, in the state dir"
        return None

    def _owns(self, this: _Identity) -> bool:
        parts = this.resolved.relative_to(self.root).parts
        if parts[:1] == (SIMULATED_DIR,):
            parts = parts[1:]
        return bool(parts) and (
            (len(parts) == 1 and _STATE_FILE.match(parts[0]) is not None) or parts[0] == _LOCKS_DIR
        )


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_writable(option: str, path: Path) -> None:
    """PathRefused unless `path` can take `option`'s file: not a directory, in an existing
    directory where a file can be created (tried, so read-only mounts show too)."""
    where = path.absolute()
    if where.is_dir():
        raise PathRefused(f"{option} {path}: is a directory; give a file name", path=path)
    if not where.parent.is_dir():
        raise PathRefused(f"{option} {path}: no directory {where.parent}", path=path)
    try:
        with tempfile.NamedTemporaryFile(dir=where.parent, prefix=f".{where.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise PathRefused(
            f"{option} {path}: cannot write in {where.parent} ({exc.strerror or exc})", path=path
        ) from exc

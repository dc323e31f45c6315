"""The check every file a run writes on the side (--report, --summary-json) passes first."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import InputError


def check_writable(option: str, path: Path) -> None:
    """InputError unless `path` can take `option`'s file: not a directory, in an existing
    directory where a file can be created (tried, so read-only mounts show too)."""
    where = path.absolute()
    if where.is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name")
    if not where.parent.is_dir():
        raise InputError(f"{option} {path}: no directory {where.parent}")
    try:
        with tempfile.NamedTemporaryFile(dir=where.parent, prefix=f".{where.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise InputError(
            f"{option} {path}: cannot write in {where.parent} ({exc.strerror or exc})"
        ) from exc

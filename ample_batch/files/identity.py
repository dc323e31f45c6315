"""Whether a lead file is still, byte for byte, the one a job fingerprinted, without reading it.

A job's fingerprint is a hash of the whole file (`inspect.fingerprint`): on a 1M-row list that
is a full read each time cron starts the job again. `FileIdentity` is what a re-entry checks
instead: the file's size, mtime and ctime (nanoseconds), inode and device, and a hash of its
first and last 64 KiB. The ctime is what makes it safe: no program can set it (`touch`,
`utime` and `cp -p` set the mtime only), and every write, rename over or metadata change moves
it, so a file rewritten in place with the same size and its old mtime put back still differs.

The remaining hole is a write within the filesystem's timestamp granularity of the one the
job saw (a second on some filesystems, a few milliseconds on ext4): it leaves every time
alone. So an identity is trusted only when taken well after the file's last change
(`RACY_SECONDS`, as git does for its index), and only if the file did not change while it was
hashed. Where ctime is not the change time (Windows, where it is the creation time) there is
no shortcut at all.

    fingerprint, identity = fingerprint_with_identity(spec)   # identity None: do not trust
    identity == FileIdentity.of(spec.path)                    # later: unchanged since
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .inspect import fingerprint
from .spec import InputSpec

SAMPLE_BYTES = 64 << 10
"""How much of each end of the file the identity hashes."""
RACY_SECONDS = 1.0
"""How long after its last change a file's times may be trusted on a filesystem with
sub-second timestamps: its clock ticks (a few ms) and a little clock skew on a network
share. Whole-second timestamps (FAT, some network shares) add 2 s."""


@dataclass(frozen=True)
class FileIdentity:
    """What a re-entry compares instead of hashing the whole file again."""

    size: int
    """Bytes."""
    mtime_ns: int
    """Last content change as the file claims it (settable by anyone)."""
    ctime_ns: int
    """Last change of content or metadata (POSIX: set by the kernel only)."""
    inode: int
    """Which file: a new file renamed over the old one has another inode."""
    device: int
    """Which filesystem the inode number belongs to."""
    sample: str
    """BLAKE2b of the first and last SAMPLE_BYTES: a last guard where times lie."""

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        """The file's identity now; None where it cannot be relied on (Windows) or read.

        >>> FileIdentity.of(Path("sample_data/leads.csv")).size > 0
        True
        """
        if os.name == "nt":
            return None
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                digest = hashlib.blake2b(digest_size=16)
                digest.update(f.read(SAMPLE_BYTES))
                if stat.st_size > SAMPLE_BYTES:
                    f.seek(max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES))
                    digest.update(f.read(SAMPLE_BYTES))
        except OSError:
            return None
        return cls(
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            ctime_ns=stat.st_ctime_ns,
            inode=stat.st_ino,
            device=stat.st_dev,
            sample=digest.hexdigest(),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> FileIdentity | None:
        """An identity recorded by `as_dict`; None for anything else (an older record)."""
        if not isinstance(data, dict):
            return None
        try:
            values = {f.name: data[f.name] for f in fields(cls)}
        except KeyError:
            return None
        if not all(isinstance(v, int) for k, v in values.items() if k != "sample"):
            return None
        if not isinstance(values["sample"], str):
            return None
        return cls(**values)

    def settled_at(self, now_ns: int) -> bool:
        """Whether the file's last change is old enough at `now_ns` (epoch nanoseconds) that
        a later change must move its times."""
        coarse = self.mtime_ns % 1_000_000_000 == 0 and self.ctime_ns % 1_000_000_000 == 0
        margin = RACY_SECONDS + (2.0 if coarse else 0.0)
        return max(self.mtime_ns, self.ctime_ns) <= now_ns - margin * 1e9


def fingerprint_with_identity(
    spec: InputSpec, *, clock_ns: Callable[[], int] = time.time_ns
) -> tuple[str, FileIdentity | None]:
    """The file's fingerprint, and its identity if a later run may trust it instead.

    The identity is None when the file changed while it was hashed, or changed too recently
    to be told apart from a change still to come (`FileIdentity.settled_at`).
    """
    before = FileIdentity.of(spec.path)
    digest = fingerprint(spec)
    after = FileIdentity.of(spec.path)
    if before is None or before != after or not before.settled_at(clock_ns()):
        return digest, None
    return digest, before

"""Where a scheduler's two ledgers live: the one place that picks a backend from the config.

Without a `ledger_dir` they are in memory (one process); with one, they are tables of the key's
SQLite file (`sqlite_ledger`), shared by every process on the key. Another backend is another
`bucket.Bucket` and a branch here.

    ledgers = open_ledgers(ScheduleConfig(), SystemClock())
    ticket = await ledgers.requests.acquire(1)
    ledgers.close()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..limits import Limit
from .bucket import Bucket, MemoryBucket
from .clock import Clock
from .config import ScheduleConfig
from .ledger import Ledger
from .sqlite_ledger import SQLiteLedgerFile


@dataclass(frozen=True)
class Ledgers:
    """A scheduler's usage and request ledgers, and what closes them."""

    usage: Ledger
    """Emails submitted, one entry per email."""
    requests: Ledger
    """HTTP requests, every endpoint."""
    file: SQLiteLedgerFile | None = field(default=None)
    """The shared file both ledgers are tables of, if any."""

    def close(self) -> None:
        """Close both ledgers and their file; what they recorded stays for the next process."""
        self.usage.close()
        self.requests.close()
        if self.file is not None:
            self.file.close()


def open_ledgers(config: ScheduleConfig, clock: Clock) -> Ledgers:
    """The usage and request ledgers `config` asks for, both on `clock`."""
    path = config.ledger_path
    file = None if path is None else SQLiteLedgerFile(path)

    def bucket(name: str, limit: Limit) -> Bucket:
        window_ms = window_ms_for(limit, config.margin_for(limit))
        if file is None:
            return MemoryBucket(limit.count, window_ms, clock)
        return file.bucket(name, limit.count, window_ms, clock)

    try:
        usage = Ledger("usage", bucket("usage", config.usage_limit), clock)
        requests = Ledger("requests", bucket("requests", config.rate_limit), clock)
    except BaseException:
        if file is not None:
            file.close()
        raise
    return Ledgers(usage, requests, file)


def window_ms_for(limit: Limit, margin: float) -> int:
    """The window a ledger keeps for `limit` widened by `margin` seconds, in whole ms.

    >>> window_ms_for(Limit(1000, 3.0), 0.015)
    3015
    """
    return math.ceil(round((limit.period + margin) * 1000, 6))

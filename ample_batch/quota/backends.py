"""Where a scheduler's two ledgers live: the one place that picks a backend from the config.

With a `state_url` they are rows of the PostgreSQL state database (`pg_ledger`), shared by
every host on the key and timed by the server's clock; else with a `ledger_dir` they are tables
of the key's SQLite file (`sqlite_ledger`), shared by every process on the key; else they are
in memory (one process). Another backend is another `bucket.Bucket` and a branch here.

    ledgers = open_ledgers(ScheduleConfig(), SystemClock())
    ticket = await ledgers.requests.acquire(1)
    ledgers.close()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from ..limits import Limit
from .bucket import Bucket, MemoryBucket
from .clock import Clock
from .config import ScheduleConfig
from .ledger import Ledger
from .sqlite_ledger import SQLiteLedgerFile


class LedgerStore(Protocol):
    """What holds a key's ledgers (a SQLite file, a database connection)."""

    def close(self) -> None:
        """Release it; what its ledgers recorded stays for the next process."""
        ...


@dataclass(frozen=True)
class Ledgers:
    """A scheduler's usage and request ledgers, and what closes them."""

    usage: Ledger
    """Emails submitted, one entry per email."""
    requests: Ledger
    """HTTP requests, every endpoint."""
    file: LedgerStore | None = field(default=None)
    """The shared file or database both ledgers live in, if any."""

    def close(self) -> None:
        """Close both ledgers and their file; what they recorded stays for the next process."""
        self.usage.close()
        self.requests.close()
        if self.file is not None:
            self.file.close()


def open_ledgers(config: ScheduleConfig, clock: Clock) -> Ledgers:
    """The usage and request ledgers `config` asks for, both sleeping on `clock` (and, but
    for PostgreSQL's, which keep the server's time, reading it)."""
    if config.state_url is not None:
        # Here, not at the top: psycopg is an optional extra.
        from .pg_ledger import PgLedgers

        ledgers = PgLedgers(config.state_url, key_id=config.key_id, schema=config.state_schema)
        try:
            usage_bucket = ledgers.bucket(
                "usage", config.usage_limit.count, _window(config, config.usage_limit)
            )
            requests_bucket = ledgers.bucket(
                "requests", config.rate_limit.count, _window(config, config.rate_limit)
            )
        except BaseException:
            ledgers.close()
            raise
        usage_ledger = Ledger("usage", usage_bucket, clock)
        return Ledgers(usage_ledger, Ledger("requests", requests_bucket, clock), ledgers)
    path = config.ledger_path
    file = None if path is None else SQLiteLedgerFile(path)

    def bucket(name: str, limit: Limit) -> Bucket:
        window_ms = _window(config, limit)
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


def _window(config: ScheduleConfig, limit: Limit) -> int:
    return window_ms_for(limit, config.margin_for(limit))


def window_ms_for(limit: Limit, margin: float) -> int:
    """The window a ledger keeps for `limit` widened by `margin` seconds, in whole ms.

    >>> window_ms_for(Limit(1000, 3.0), 0.015)
    3015
    """
    return math.ceil(round((limit.period + margin) * 1000, 6))

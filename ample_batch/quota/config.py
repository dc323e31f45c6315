"""The scheduler's configuration: the limits to keep, and where their ledgers live.

>>> ScheduleConfig(ledger_dir=Path("/state"), key_id="ab12").ledger_path.name
'ledger-ab12.sqlite'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..limits import Limit

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ledger_file_name(key_id: str) -> str:
    """The name of the SQLite file holding one key's ledgers, in the state dir: the one
    place it is spelt (`"*"` for a key id makes it the glob of every key's).

    >>> ledger_file_name("ab12")
    'ledger-ab12.sqlite'
    """
    return f"ledger-{key_id}.sqlite"


def key_id(api_key: str) -> str:
    """A stable, non-secret name for an API key: its ledgers and state are filed under it.

    >>> key_id("secret-key")
    '3b9a1f953d75b2d6'
    """
    return hashlib.sha256(f"ample-batch:{api_key}".encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """The limits to keep and where their ledgers live."""

    usage_limit: Limit = Limit(15000, 3600.0)
    """Emails submitted per rolling window."""
    rate_limit: Limit = Limit(500, 60.0)
    """Requests per rolling window, all endpoints together."""
    ledger_dir: Path | None = None
    """Where the shared ledgers live; None keeps them in memory (one process only)."""
    state_url: str | None = field(default=None, repr=False)
    """A PostgreSQL URL: the ledgers live in that database, shared by every host, and
    `ledger_dir` is not used. Kept out of the repr: it may hold a password."""
    state_schema: str = "ample_batch"
    """The PostgreSQL schema of `state_url`'s tables."""
    key_id: str = "default"
    """Ledgers are per API key: `key_id(api_key)`, never the key itself."""
    margin: float | None = None
    """Seconds added to each window for network latency; None = 0.5% of the period, at most 2 s."""

    def __post_init__(self) -> None:
        for name, limit in (("usage_limit", self.usage_limit), ("rate_limit", self.rate_limit)):
            if limit.count < 1 or not limit.period > 0:
                raise ValueError(f"{name} must allow at least 1 per positive period, not {limit}")
        if self.margin is not None and not self.margin >= 0:
            raise ValueError(f"margin must be zero or more seconds, not {self.margin}")
        if not _KEY_ID.match(self.key_id):
            raise ValueError("key_id must be letters, digits, '-' or '_': use key_id(api_key)")

    def margin_for(self, limit: Limit) -> float:
        """The margin added to `limit`'s window, in seconds."""
        if self.margin is not None:
            return self.margin
        return min(0.005 * limit.period, 2.0)

    @property
    def ledger_path(self) -> Path | None:
        """The SQLite file holding this key's ledgers, if they are shared."""
        if self.ledger_dir is None:
            return None
        return self.ledger_dir / ledger_file_name(self.key_id)

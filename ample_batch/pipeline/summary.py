"""What a run reports: its summary, its live status, and the reporter callback type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..files.spec import SplitFile
from ..jobs.follow import Counters
from ..limits import Limit


@dataclass
class Summary:
    """The outcome of a validate run; also written as JSON by --summary-json."""

    job: str
    input: str
    email_column: str
    output: str
    complete: bool
    rows: int
    unique_emails: int
    cached: int
    invalid: int
    """Rows written `invalid_syntax`: the output's count of them, `refused` included."""
    blank: int
    duplicates: int
    credits_spent: int
    possible_double_charges: int
    remaining: int
    failed: int
    verdicts: dict[str, int]
    elapsed_seconds: float
    stop_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    simulated: bool = False
    """A --simulate run: the verdicts are made up and no credit was spent."""
    usage_limit: str | None = None
    """The usage limit the run kept to (`15000/1h`): the report's timeline draws it."""
    report: str | None = None
    """The HTML report written (`--report`), as an absolute path; None when none was."""
    rechecked: dict[str, int] = field(default_factory=dict)
    """Emails this run planned to buy again under `--recheck`, by verdict kind (all 0 when
    nothing was stale; empty with `--recheck none`)."""
    refused: int = 0
    """Of the `invalid` rows, those whose email the API refused as malformed (sent, never
    charged); the others failed the syntax check here and were never sent."""
    split: dict[str, SplitFile] = field(default_factory=dict)
    """`--split`: each `email_result` value's file (absolute path) and its row count; empty
    without --split or when the job is not complete."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LiveStatus:
    """What a progress display reads while a run goes on."""

    stage: str = "starting"
    rows: int = 0
    unique: int = 0
    to_submit: int = 0
    counters: Counters | None = None
    quota_used: Callable[[], int] | None = None
    usage_limit: Limit | None = None
    next_submission: Callable[[int], float] | None = None
    """Seconds until a batch of this many emails (at most one chunk) may be submitted."""


Reporter = Callable[[LiveStatus], None]

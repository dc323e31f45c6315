"""The states a job shows in `status`, the report and `status --json`, and what each means.

Only a run's end (or `cancel`) records `done`, `partial` or `canceled`; a run records
`running` once it starts buying. What is stored is not always what is shown: a job stored as
`running` that no live run holds was left by a run that died without recording its end
(SIGKILL, a second Ctrl-C, a lost machine), and shows as `stopped`.

    >>> shown_state(RUNNING, held=False), shown_state(PARTIAL, held=True)
    ('stopped', 'running')
"""

from __future__ import annotations

NEW = "new"
RUNNING = "running"
STOPPED = "stopped"
PARTIAL = "partial"
CANCELED = "canceled"
DONE = "done"

MEANINGS: dict[str, str] = {
    NEW: "no run of the job has begun validating yet (it may have been scanned and planned)",
    RUNNING: "a live run holds the job now (status names its process and host)",
    STOPPED: "its last run began validating and died without recording how it ended "
    "(killed, interrupted twice, its machine lost); what it bought is kept: run again",
    PARTIAL: "its last run stopped early and said why (deadline, interrupt, out of credits, "
    "API unavailable): the partial output is written; run again",
    CANCELED: "`cancel` stopped its validations; the canceled emails are pending: run again",
    DONE: "every email has a verdict and the output is written",
}
"""Every state `status` can show, as the README's table defines it."""


def shown_state(stored: str, *, held: bool) -> str:
    """The state to show for a job stored as `stored`: `running` while a live run holds
    it (whatever its last run recorded), `stopped` for a run that died while `running`."""
    if held:
        return RUNNING
    return STOPPED if stored == RUNNING else stored

"""The job store's seam: what the engine, the followers and the pipeline ask of the store.

`sqlite.store.Store` (SQLite) and `postgres.store.PgStore` (PostgreSQL, shared by many hosts)
implement it, member for member (what they do alike is `store_shared.SharedStore`'s);
`backend.open_store` picks one. Nothing outside the implementations sees SQL.

The contract every implementation keeps:

- **One transaction per method.** Each method that writes commits everything it writes in
  one transaction, or nothing: a process killed at any point leaves the store as it was
  before the call or as it is after it. Reads see only committed state. What a batch's
  transition depends on (its state, attempt or emails) is read inside its transaction, so
  another process's commit just before it is never overwritten with an older read.
- **Many processes share the store.** Several runs (one per job, each holding its job lock,
  see locks.py) and `status` work on one store at once. Methods that look at other jobs'
  batches (`adopt_in_flight`, `adopt_overlap`, `mark_submitting`) must read and write under
  a lock that serialises them with every other writer (SQLite: `BEGIN IMMEDIATE`; PostgreSQL:
  SERIALIZABLE, or a lock taken first), so two processes never both buy one email.
- **The state machine is checked.** Each batch moves only as `records.MOVES` allows; any other
  move raises StateFailed and writes nothing.
- **Durable where money is.** `mark_submitting` and `mark_running` must survive an OS crash
  once they return (SQLite: `synchronous=FULL`; PostgreSQL: `synchronous_commit=on`), and
  `mark_running` keeps retrying a commit that fails for a passing reason: until it lands, a
  paid batch's fate is unknowable.
- **Our errors only.** A backend's own exceptions never escape: a store that is locked,
  unreachable or out of space raises StateUnavailable (exit 75, run again); one the user must
  fix (corrupt, read-only, newer schema) StateUnusable (exit 2); anything else StateFailed.
  Iterators raise these too, while being read.
- **Times come from the store's clock** (the `clock` it was opened with, epoch seconds),
  except where a method takes `now`.

Verdicts are `(email, result, catch_all)`; emails are the normalised ones the planner gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, Self

from .records import Batch, BatchState, Claim, Job, Progress, Verdict


class JobStore(Protocol):
    """Jobs, their batches and verdicts, and the verdict cache, shared by every process
    on one state dir. Use as a context manager, or call `close()`."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None:
        """Close the store."""

    def close(self) -> None:
        """Release the connection; the store is not used after this."""

    # -- jobs ----------------------------------------------------------------------------

    def open_job(
        self,
        *,
        input_path: str,
        fingerprint: str,
        email_column: str,
        output_path: str | None,
        cache_ttl: float,
        key_id: str | None = None,
        base_url: str | None = None,
        sheet: str | None = None,
    ) -> Job:
        """The job for this input, created on first sight with its cache cutoff fixed
        (`options.cache_cutoff`); an existing job gets this run's output path and, when
        given, key id and base URL (never the key). One transaction. Called holding the
        job's lock.

        Its id: SQLite's is the input's path, content and column (`records.job_id_for`);
        a shared store's is what the input is wherever it lies, content and column
        (`pg.content_job_id`). Both add `sheet`, a workbook's sheet other than the one read
        without --sheet (`InputSpec.identity_sheet`; None keeps the id as it always was),
        so two sheets of one workbook are two jobs."""

    def get_job(self, job_id: str) -> Job | None:
        """The job whose id is `job_id` or starts with it; None if none or several do."""

    def jobs(self) -> list[Job]:
        """Every job, most recently updated first."""

    def update_job(self, job_id: str, *, state: str, stats: dict[str, Any]) -> None:
        """Replace the job's state word and stats (kept as JSON), and touch `updated_at`."""

    def note_possible_double_charges(self, job_id: str, emails: int) -> None:
        """Add `emails` to the job's possible double charges: an increment, atomic, since a
        run following another job's batch adds to that job too."""

    # -- planning and the cache ----------------------------------------------------------

    def batched_emails(self, job_id: str) -> list[str]:
        """Every email in one of the job's batches, except those in first-attempt planned
        batches (which `plan` dissolves): what a re-plan must leave alone."""

    def fresh_verdicts(self, cutoff: float) -> Iterator[Verdict]:
        """Cached verdicts checked at or after `cutoff`, streamed: the cache may hold
        millions for other jobs."""

    def plan(
        self,
        job_id: str,
        *,
        cached: Sequence[Verdict],
        new: Sequence[str],
        chunk_size: int,
    ) -> None:
        """Re-plan the job: dissolve its first-attempt planned batches, then add `cached`
        as batches born `done` (source `cache`) and `new` as planned batches of at most
        `chunk_size` (`plan.split_batches`).

        May take several transactions (bounded, so other processes are not shut out), each
        of whole batches; killed between two, a re-plan from `batched_emails` is still right.
        """

    def release_stale(self, job_id: str, emails: Iterable[str], *, checked_before: float) -> int:
        """Verdicts a re-check policy buys again (stale.py). In one transaction: each of
        `emails` leaves the job's `done` and `failed` batches (each batch's `size` shrinks by
        the emails it lost; its state and other fields stay), and each one's cached verdict
        leaves the cache if checked before `checked_before` (`-inf`: none does). Emails in
        the job's other batches, and other jobs' batches, are left alone. Returns how many
        left the job's batches. Serialised with writers as any write; not durable-critical
        (killed after it, the emails are simply in no batch, and planned again)."""

    def prune_verdicts(self, run_ttl: float) -> int:
        """Delete cached verdicts no job can use any more (older than the longest TTL in
        use, the default included, and than every unfinished job's cutoff); how many went."""

    def adopt_in_flight(self, job_id: str, candidates: Iterable[str]) -> set[str]:
        """At plan time: candidates in an open batch of another job on the same key id and
        base URL go into `waiting` batches of this job that adopt it; returns them. An open
        batch elsewhere sharing none still gets one empty waiting batch, once. One
        transaction, serialised with every writer (see the module docstring)."""

    # -- reading batches -----------------------------------------------------------------

    def batches(self, job_id: str, *states: BatchState) -> list[Batch]:
        """The job's batches (those in `states`, if any are given), in creation order."""

    def batch(self, batch_id: int) -> Batch:
        """The batch; KeyError if there is none."""

    def find_batch(self, batch_id: int) -> Batch | None:
        """The batch, or None: for another job's batch, which may be gone."""

    def batch_emails(self, batch_id: int, *, unresolved: bool = False) -> list[str]:
        """The batch's emails (only those without a verdict, if `unresolved`)."""

    def batch_verdicts(self, batch_id: int) -> list[Verdict]:
        """The verdicts already recorded in the batch, by earlier pages or runs."""

    def batch_email_states(self, batch_id: int, emails: Iterable[str]) -> dict[str, bool]:
        """Those of `emails` the batch holds, each with whether it has a verdict yet."""

    def remote_errors(self, batch_id: int) -> list[dict[str, Any]]:
        """The `_errors` saved by `mark_fetching`; [] if none or unreadable."""

    def follow_failures(self, batch_id: int) -> int:
        """Failed polls or pages of the batch in a row, over every run (0 if none)."""

    # -- the batch state machine -----------------------------------------------------------

    def adopt_overlap(self, batch_id: int) -> Claim:
        """Before waiting for quota: `mark_submitting`'s check without its move. One
        transaction, serialised with every writer."""

    def mark_submitting(self, batch_id: int) -> Claim:
        """About to POST the batch (planned; `submitting` already when the client retries a
        POST refused outright): in one durable transaction, serialised with every
        writer, its unresolved emails take verdicts cached since it was planned, those in
        another job's open batch on the key move to new waiting batches (`claim.waiting`),
        and only if neither changed anything (`claim.changed` false) the batch becomes
        `submitting` with `submitted_at` set. A changed batch is not POSTed as it was."""

    def mark_running(self, batch_id: int, *, remote_id: str, remote_href: str) -> None:
        """The POST was accepted: `running`, with the remote id and href, durably. A commit
        that fails for a passing reason (locked, disk full) is retried with backoff before
        StateUnavailable is raised: it must land."""

    def note_poll(self, batch_id: int, *, poll_after: float) -> None:
        """Remember the epoch time before which the batch must not be polled again."""

    def mark_fetching(
        self,
        batch_id: int,
        *,
        first_href: str,
        remote_status: str,
        errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Terminal on the server: `fetching` from `first_href`, keeping the final status and
        its `_errors` for a resumed run."""

    def record_page(
        self,
        batch_id: int,
        verdicts: Iterable[Verdict],
        *,
        next_href: str | None,
    ) -> None:
        """In one transaction: the page's verdicts written to the batch's emails and upserted
        into the cache (checked now), and the href paging continues from. Killed after it,
        a resumed run fetches the next page; killed before, this one again."""

    def finish(self, batch_id: int) -> None:
        """Fully paged (or empty): `done`, or `failed` if some emails have no verdict."""

    def fail(self, batch_id: int, *, error: str) -> None:
        """Give up on the batch: `failed`; its emails without a verdict read as `failed`."""

    def back_to_planned(self, batch_id: int, *, error: str | None = None) -> None:
        """The POST did not create a batch (refused, stopped, or lost before it was sent):
        `planned` again, for a later submission."""

    def retry_unresolved(
        self, batch_id: int, *, error: str, next_attempt: bool = True
    ) -> int | None:
        """The validation ended in error. In one transaction: its emails without a verdict
        move into a new planned batch of the next attempt and it becomes `done`; or, after
        `records.BATCH_ATTEMPTS` or with none unresolved, it becomes `failed` (`done` if
        none) in place. Returns the new batch's id, or None. With `next_attempt=False` the
        new batch is of the same attempt, never `failed` for attempts: the API lost the
        batch through no fault of its emails (a --simulate run's fake gone with its run)."""

    def release_unresolved(self, batch_id: int, *, error: str | None = None) -> int:
        """Canceled, or out of credits: in one transaction its emails without a verdict
        move into a new planned batch (never charged: a first attempt, which the next run's
        plan may re-cut) and it becomes `done`. Returns how many moved."""

    def split(self, batch_id: int, size: int) -> None:
        """Re-cut a planned batch larger than `size`: its first `size` unresolved emails
        stay, the rest go into new planned batches of the same attempt. One transaction."""

    def settle_adopted(self, batch_id: int) -> int:
        """The batch a waiting batch adopts is over. In one transaction: its emails take
        verdicts cached since it was adopted, the rest move into a new planned batch of
        this job, and it becomes `done`. Returns how many were planned again."""

    # -- outcomes --------------------------------------------------------------------------

    def note_follow_failure(self, batch_id: int, now: float) -> tuple[int, float]:
        """One more failed poll or page: returns the failures in a row and when the first
        of them was (`now` for the first), kept across runs. Increment and read in one
        transaction."""

    def clear_follow_failures(self, batch_id: int) -> None:
        """A poll or page succeeded: the batch's failure count starts again."""

    def remember_rejected(self, batch_id: int, emails: Sequence[str], *, error: str) -> None:
        """The API refused these emails as malformed: each gets `invalid_syntax` in the
        batch, and is remembered store-wide so no later run sends it. One transaction."""

    def apply_known_rejections(self, batch_id: int) -> int:
        """Give `invalid_syntax` to the batch's unresolved emails refused before; how many."""

    # -- reading results -------------------------------------------------------------------

    def job_verdicts(self, job_id: str) -> Iterator[Verdict]:
        """Every verdict of the job, streamed; the unresolved emails of its failed batches
        come back as `failed`, those of other batches not at all."""

    def progress(self, job_id: str) -> Progress:
        """The job's email counts (all, resolved, from the cache, failed) and its API
        batches counted by state."""

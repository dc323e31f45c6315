"""Drive a job's batches through their state machine against the API.

Resume first: batches already running or fetching are followed before anything new goes out.
Then planned batches are submitted one at a time (`submit.py`), while every submitted batch is
followed concurrently (`follow.py`: poll, honouring Retry-After, then page through the results,
committing each page) and every waiting batch waits for the batch it adopts (`inflight.py`).
Retry batches born from validations that ended in `error` are picked up by the same loop.

The engine stops submitting when asked to (deadline, interrupt), when the account is out of
credits, or when the API keeps failing. On a stop it cancels the following of every batch not
yet being paged through (the next run resumes those) and waits for the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..api.client import ValidationClient
from ..api.responses import Validation
from ..quota.scheduler import Scheduler
from .backend import fence_claims, lock_lost, locks_of
from .follow import Counters, Follower, FollowPolicy, note_double_charges
from .inflight import await_adopted
from .locks import JobLocks
from .protocol import JobStore
from .records import Batch, BatchState
from .submit import StopSubmitting, Submitter


class Engine:
    """Runs one job's batches to completion, or until told to stop."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        client: ValidationClient,
        scheduler: Scheduler,
        *,
        stop: asyncio.Event,
        deadline: float | None = None,
        chunk_size: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        follow_policy: FollowPolicy | None = None,
        locks: JobLocks | None = None,
    ) -> None:
        self.store = store
        # Other jobs' locks: an adopted batch whose run is gone is followed here (inflight.py).
        self.locks: JobLocks = locks if locks is not None else locks_of(store)
        # With shared state every claim checks that this run still holds the job's lock.
        fence_claims(store, self.locks, job_id)
        self.job_id = job_id
        self.client = client
        self.scheduler = scheduler
        self.stop = stop
        self.deadline = deadline
        self.counters = Counters()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.submitter = Submitter(
            store,
            job_id,
            client,
            scheduler,
            self.counters,
            stop=stop,
            deadline=deadline,
            chunk_size=chunk_size or scheduler.config.usage_limit.count,
            locks=self.locks,
            on_waiting=self._await_adopted,
            on_running=self._follow_submitted,
        )
        self.follower = Follower(
            store,
            job_id,
            client,
            self.counters,
            stop=stop,
            deadline=deadline,
            wall_clock=wall_clock,
            policy=follow_policy or FollowPolicy(),
            on_answer=self.submitter.server_answered,
        )

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> Counters:
        """Resume open batches, submit planned ones, follow all until done or stopped."""
        for batch in self.store.batches(
            self.job_id,
            BatchState.SUBMITTING,
            BatchState.RUNNING,
            BatchState.FETCHING,
            BatchState.WAITING,
        ):
            if batch.state is BatchState.WAITING:
                self._await_adopted(batch.id)
            elif batch.state is BatchState.SUBMITTING:
                # The last run died mid-POST: the batch may exist and be charged. It is sent
                # again (there is no way to look it up) and counted as a possible double charge.
                note_double_charges(self.store, self.job_id, self.counters, batch.size)
                self.store.back_to_planned(batch.id, error="the previous run lost this POST")
            else:
                self._follow_in_background(batch)
        try:
            await self._submit_loop()
        finally:
            await self._drain()
        # The cancel watcher stopped the run because another run took the job: say so.
        lost = lock_lost(self.locks, self.job_id)
        if lost is not None and self.stop.is_set():
            self.counters.stop_reason = lost
        return self.counters

    async def _submit_loop(self) -> None:
        while not self.submitter.should_stop():
            planned = self.store.batches(self.job_id, BatchState.PLANNED)
            if planned:
                try:
                    await self.submitter.submit(planned[0])
                except StopSubmitting:
                    return
                continue
            if not self._tasks:
                return
            # Nothing to submit yet: wait for a batch to finish (it may re-queue emails).
            await self._wait_any(set(self._tasks.values()))

    async def _drain(self) -> None:
        """Wait for followed batches; on stop, cancel the ones still waiting on the server."""
        while self._tasks:
            if self.stop.is_set() or self._past_deadline():
                for batch_id, task in list(self._tasks.items()):
                    if self.store.batch(batch_id).state in (BatchState.RUNNING, BatchState.WAITING):
                        task.cancel()
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
                break
            await self._wait_any(set(self._tasks.values()))
        self._raise_task_errors()

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def _wait_any(self, tasks: set[asyncio.Task[None]]) -> None:
        stop_waiter = asyncio.ensure_future(self.stop.wait())
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            await asyncio.wait(
                {*tasks, stop_waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_waiter.cancel()
        self._raise_task_errors()

    def _raise_task_errors(self) -> None:
        """Re-raise the first error a follow task could not handle (unauthorized, say)."""
        for batch_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[batch_id]
                if not task.cancelled() and task.exception() is not None:
                    for other in self._tasks.values():
                        other.cancel()
                    raise task.exception()  # type: ignore[misc]

    # -- following -----------------------------------------------------------------------

    def _await_adopted(self, batch_id: int) -> None:
        self._tasks[batch_id] = asyncio.create_task(await_adopted(self, self.store.batch(batch_id)))

    async def follow(self, batch: Batch, validation: Validation | None = None) -> None:
        """Poll a submitted batch until terminal, then page its results into the store."""
        await self.follower.follow(batch, validation)

    def _follow_submitted(self, batch_id: int, validation: Validation) -> None:
        """A batch just recorded as running: its first answer's Retry-After is kept, and it is
        followed from that answer on."""
        self.follower.note_poll(batch_id, validation)
        self._follow_in_background(self.store.batch(batch_id), validation)

    def _follow_in_background(self, batch: Batch, validation: Validation | None = None) -> None:
        self._tasks[batch.id] = asyncio.create_task(self.follower.follow(batch, validation))

"""How a run stops early: on a signal, at --max-runtime, and what it raises with its summary.

A first Ctrl-C (SIGINT or SIGTERM) or `avalidate`'s `stop` event asks the run to wrap up; a
second leaves at once: the command line exits (`exit_on_second_signal`), while a run in the
caller's process (a script, a notebook's kernel) is cancelled and raises Stopped, so the
process lives on. `StoppedWithSummary` and `InsufficientCreditsStop` carry the summary
of a run that ended with its partial output written.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any

from ..errors import EXIT_TEMPFAIL, InsufficientCredits, Stopped
from ..files.output import remove_temp_files
from ..options import ValidateOptions
from .session import T
from .summary import Summary

__all__ = [
    "InsufficientCreditsStop",
    "StoppedWithSummary",
    "before_the_engine",
    "deadline_for",
    "exit_on_second_signal",
    "stop_on_signals",
]

_SECOND_SIGNAL_EXITS = contextvars.ContextVar("second_signal_exits", default=False)
TWICE = "interrupted twice: stopped at once; run again to resume"


def deadline_for(options: ValidateOptions, started: float) -> float | None:
    """When --max-runtime ends this run, on the monotonic clock."""
    return None if options.max_runtime is None else started + options.max_runtime


async def before_the_engine(
    step: Awaitable[T], stop: asyncio.Event, deadline: float | None, what: str
) -> T:
    """Await a step that comes before any submission, cut short by a stop or the deadline.

    Nothing that costs money is in flight before the engine starts, so cutting the step's
    request (or its wait for a request slot) is always safe.
    """
    task = asyncio.ensure_future(step)
    stopped = asyncio.ensure_future(stop.wait())
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        await asyncio.wait({task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    reason = "interrupted" if stop.is_set() else "max runtime reached"
    raise Stopped(
        f"{reason} while {what}; nothing was submitted; run the same command again to resume"
    )


class StoppedWithSummary(Stopped):
    """Stopped early; the partial output is written and `summary` says how far it got."""

    summary: Summary

    def __init__(self, summary: Summary) -> None:
        reason = summary.stop_reason or "stopped"
        super().__init__(
            f"{reason}: {summary.remaining:,} email(s) still to validate; partial output in "
            f"{summary.output}; run the same command again to resume"
        )
        self.summary = summary


class InsufficientCreditsStop(InsufficientCredits):
    """Out of credits; the partial output is written and `summary` says what remains."""

    summary: Summary

    def __init__(self, summary: Summary) -> None:
        super().__init__(
            f"the account is out of email credits: {summary.remaining:,} email(s) still to "
            f"validate; partial output in {summary.output}; top up, then run the same command "
            "again (nothing done is paid twice)"
        )
        self.summary = summary


@contextlib.contextmanager
def exit_on_second_signal() -> Iterator[None]:
    """Within it, a run's second signal ends the process at once with exit 75: the command
    line's choice, since a thread busy in a scan or a write cannot be cancelled."""
    token = _SECOND_SIGNAL_EXITS.set(True)
    try:
        yield
    finally:
        _SECOND_SIGNAL_EXITS.reset(token)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop submitting and wrap up. Second: leave at once (state is safe:
    every transition is a committed transaction): exit, within `exit_on_second_signal`, else
    cancel the run, which raises Stopped in the caller's task.

    Only the main thread can take signals: elsewhere (a notebook's run on a thread of its
    own, a loop that cannot take them) the run goes without, and the caller's handlers are put
    back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    cancelled = False

    def on_signal() -> None:
        nonlocal cancelled
        if not stop.is_set():
            stop.set()
        elif _SECOND_SIGNAL_EXITS.get():
            # Leaving without unwinding: the output being written would stay behind.
            remove_temp_files()
            os.write(2, f"ample-batch: {TWICE}\n".encode())
            os._exit(EXIT_TEMPFAIL)
        elif task is not None and not cancelled:
            cancelled = True
            task.cancel()

    installed: dict[signal.Signals, Any] = {}
    # A loop without signal support (Windows' Proactor, some embedders) goes without.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, on_signal)
            installed[sig] = previous
    try:
        yield
    except asyncio.CancelledError:
        if not cancelled or task is None:
            raise
        task.uncancel()  # our cancel, not the caller's: it ends here, as an exception
        raise Stopped(TWICE) from None
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)

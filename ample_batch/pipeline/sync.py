"""The synchronous functions' runner: `asyncio.run`, or, inside a running event loop (a
notebook), a thread of its own with its own loop.

    summary = run_sync(lambda stop: avalidate(options, stop=stop))

`asyncio.run` refuses to start while this thread's loop is running, and that loop cannot be
lent: it is busy running the caller. On the thread, signal handlers cannot be installed, so a
KeyboardInterrupt that reaches the waiting caller sets `stop` instead: the run wraps up (the
partial output written) and raises Stopped, as a first Ctrl-C does on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

Work = Callable[[asyncio.Event], Coroutine[Any, Any, T]]
"""The async work, given the event that asks it to stop."""


def run_sync(work: Work[T]) -> T:
    """Run `work(stop)` to its end and return its result or raise its exception."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work(asyncio.Event()))
    return _on_a_thread(work)


def _on_a_thread(work: Work[T]) -> T:
    started = threading.Event()
    handles: list[Any] = []  # the thread's loop and stop event, once it runs
    outcome: dict[str, Any] = {}

    def main() -> None:
        with asyncio.Runner() as runner:
            stop = asyncio.Event()
            handles.extend([runner.get_loop(), stop])
            started.set()
            try:
                outcome["result"] = runner.run(work(stop))
            except BaseException as exc:  # handed to the caller's thread as it is
                outcome["error"] = exc

    thread = threading.Thread(target=main, name="ample-batch", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        started.wait()
        loop, stop = handles
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
            loop.call_soon_threadsafe(stop.set)
        # A second interrupt leaves this wait at once; the run still wraps up on its thread.
        thread.join()
    if "error" in outcome:
        error: BaseException = outcome.pop("error")
        raise error
    result: T = outcome["result"]
    return result

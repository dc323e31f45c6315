"""The run's cancel watcher on shared state (pipeline/jobs.watch_for_cancel): its looks at the
database run off the event loop, so a server cut off without a word never freezes the run
(Ctrl-C, --max-runtime, the other batches)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from ample_batch.jobs.postgres.locks import PgLocks
from ample_batch.pipeline.jobs import watch_for_cancel


class _Partition:
    """A TCP relay to the database that can go silent (`cut`), as a network partition does:
    nothing is refused or closed, nothing gets through."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.closed.is_set():
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
                threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        with client, server, contextlib.suppress(OSError):
            while not self.closed.is_set():
                if not self.open.wait(0.05):
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)


@contextlib.contextmanager
def _through_partition(url: str) -> Iterator[tuple[str, _Partition]]:
    parts = urlsplit(url)
    relay = _Partition(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rpartition(":")[0] + f":{relay.port}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), relay
    finally:
        relay.close()


async def test_the_cancel_watcher_looks_off_the_loop(pg_url: str) -> None:
    with _through_partition(pg_url) as (url, partition):
        locks = PgLocks(url)
        try:
            with locks.try_job_lock("j1") as held:
                assert held
                partition.cut()
                # Healed from a thread: were the look on the loop, nothing else could.
                threading.Timer(1.5, partition.heal).start()
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch_for_cancel(locks, "j1", stop))
                ticks, started = 0, time.monotonic()
                while time.monotonic() - started < 0.5:
                    await asyncio.sleep(0.01)
                    ticks += 1
                assert ticks >= 20, "the loop froze while the watcher waited for the database"
                assert not watcher.done()
                # Healed, the look ends and finds the lock held and no cancel asked.
                await asyncio.sleep(1.5)
                assert not stop.is_set()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        finally:
            locks.close()

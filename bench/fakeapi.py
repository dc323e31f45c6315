"""The fake Amplemarket API in a background thread, and the real CLI in a subprocess.

The fake runs in this process (its own event loop in a daemon thread) so the crash loop can
watch its request log live without an HTTP round trip per look; the tool under test is the
real `ample-batch validate` command in its own process, exactly as cron would run it.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .common import CHILD_ENV, DATA, ROOT

API_KEY = "bench-key"
ZERO_ID = "00000000-0000-0000-0000-000000000000"
T = TypeVar("T")


class FakeThread:
    """`ample_batch.fake` served on loopback from a daemon thread; use as a context manager."""

    def __init__(self, **config: Any) -> None:
        from ample_batch.fake.config import FakeConfig
        from ample_batch.fake.server import start_fake

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._running = self._call(start_fake(FakeConfig(api_key=API_KEY, **config)))
        self.url: str = self._running.url
        self.api = self._running.api

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def summary(self) -> Any:
        """The fake's `FakeSummary`, computed on its own loop (it advances the model)."""

        async def take() -> Any:
            return self.api.summary()

        return self._call(take())

    def requests(self) -> int:
        """How many API requests the fake has logged so far (safe from any thread)."""
        return len(self.api.log)

    def close(self) -> None:
        self._call(self._running.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_of(method: str, path: str) -> str:
    """What a logged request says the client was doing."""
    if method == "POST":
        return "submitting"
    if method == "PATCH":
        return "canceling"
    if ZERO_ID in path:
        return "checking key"
    return "paging" if "?" in path else "polling"


def validate_command(
    src: Path, out: Path, state: Path, url: str, summary: Path, *options: str
) -> list[str]:
    """`ample-batch validate` as the user would type it, against the fake at `url`."""
    return [
        sys.executable,
        "-m",
        "ample_batch",
        "validate",
        str(src),
        "-o",
        str(out),
        "--base-url",
        url,
        "--state-dir",
        str(state),
        "--summary-json",
        str(summary),
        *options,
    ]


def validate_env() -> dict[str, str]:
    return {**CHILD_ENV, "AMPLEMARKET_API_KEY": API_KEY}


def run_validate(command: list[str], *, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=validate_env(), capture_output=True, text=True, timeout=timeout
    )


def fresh_dir(name: str) -> Path:
    """An empty directory under bench/data (state dirs must not share a ledger or cache)."""
    path = DATA / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def leads_with_unique(path: Path, unique: int, *, seed: int) -> int:
    """Write the shortest prefix of a generated lead list holding exactly `unique` distinct
    valid emails, so the ideal schedule is exact; returns the row count."""
    import pyarrow.compute as pc

    from .io import VALID
    from .leads import csv_bytes, lead_table

    # The generator yields ~82% distinct valid emails; 30% headroom always suffices.
    table = lead_table(math.ceil(unique * 1.3) + 100, seed=seed)
    keys = pc.utf8_lower(pc.utf8_trim_whitespace(table["Email"])).combine_chunks()
    valid = pc.match_substring_regex(keys, VALID).to_pylist()
    seen: set[str] = set()
    for index, (key, ok) in enumerate(zip(keys.to_pylist(), valid, strict=True)):
        if ok:
            seen.add(key)
            if len(seen) == unique:
                rows = index + 1
                break
    else:
        raise RuntimeError(f"generated too few unique emails for {unique:,}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(table.slice(0, rows), header=True))
    return rows


def traceback_in(*texts: str) -> bool:
    return any("Traceback (most recent call last)" in text for text in texts)

"""Test helpers shared across test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import csv
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ample_batch.api.client import ValidationClient
from ample_batch.api.retries import RetryPolicy
from ample_batch.fake.config import FakeConfig, verdict_for
from ample_batch.fake.server import RunningFake, start_fake
from ample_batch.fake.summary import FakeSummary

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: README.md, sample_data/, pyproject.toml."""
DATA = ROOT / "tests" / "data"
"""The folder of tiny real input files every reader is run on."""

KEY = "test-key-7c1d2b3a"

# Fast but real: the client waits what the server says; only our own backoff is shortened.
FAST_RETRY = RetryPolicy(
    attempts=4, wait_initial=0.01, wait_max=0.05, first_poll=0.05, default_poll=0.05
)


class ManualClock:
    """Monotonic time a test controls: it stands still and moves by `advance` (or by setting
    `now`); `running=True`, or `resume()`, lets it follow real time until `pause()`, to hold a
    fake's progress still at the moment the test chooses."""

    def __init__(self, start: float = 1000.0, *, running: bool = False) -> None:
        self._base = start
        self._since: float | None = time.monotonic() if running else None

    @property
    def now(self) -> float:
        if self._since is None:
            return self._base
        return self._base + time.monotonic() - self._since

    @now.setter
    def now(self, value: float) -> None:
        self._base = value
        if self._since is not None:
            self._since = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def pause(self) -> None:
        self._base, self._since = self.now, None

    def resume(self) -> None:
        self._since = time.monotonic()


def make_client(
    session: aiohttp.ClientSession, url: str, *, key: str = KEY, **kw: object
) -> ValidationClient:
    kw.setdefault("policy", FAST_RETRY)
    return ValidationClient(session, base_url=url, api_key=key, **kw)  # type: ignore[arg-type]


StartFake = Callable[..., Awaitable[RunningFake]]
"""The `fake_api` fixture: `await fake_api(credits=10, ...)` serves a fake on loopback."""


def fake_config(**options: object) -> FakeConfig:
    """The fake's configuration, with the tests' API key unless given: the one recipe for the
    `fake_api` fixture (served on the test's loop) and `FakeInThread` (on a thread's loop)."""
    options.setdefault("api_key", KEY)
    return FakeConfig(**options)  # type: ignore[arg-type]


class FakeInThread:
    """The fake API served from its own event loop in a background thread, so code under test
    that runs its own loop (the CLI, subprocesses) can talk to it over loopback."""

    def __init__(self, **options: object) -> None:
        self.config = fake_config(**options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.running = self._call(start_fake(self.config))
        self.url = self.running.url
        self.api = self.running.api

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def summary(self) -> FakeSummary:
        async def read() -> FakeSummary:
            return self.api.summary()

        return self._call(read())

    def add_credits(self, count: int) -> None:
        async def add() -> None:
            self.api.add_credits(count)

        self._call(add())

    def close(self) -> None:
        self._call(self.running.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeInThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_leads(path: Path, rows: list[dict[str, str]], *, delimiter: str = ",") -> Path:
    """A CSV with the given rows (all text), written with the csv module."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def lead_rows(unique: int, *, start: int = 0, blanks: int = 0, invalid: int = 0) -> list[dict]:
    """`unique` distinct valid emails, each also repeated once in a case/space variant for
    every tenth, plus blank and malformed cells; every other column is tricky text."""
    rows = []
    for i in range(start, start + unique):
        email = f"lead{i:06d}@company{i % 97}.com"
        rows.append({"id": f"{i:06d}", "name": f"Name, {i}", "Email": email, "zip": "00123"})
        if i % 10 == 0:
            rows.append({"id": f"d{i}", "name": "NA", "Email": f"  {email.upper()} ", "zip": ""})
    for i in range(blanks):
        rows.append({"id": f"b{i}", "name": "blank", "Email": "", "zip": "null"})
    for i in range(invalid):
        rows.append({"id": f"x{i}", "name": "bad", "Email": f"not-an-email-{i}", "zip": "1e5"})
    return rows


def expected_result(cell: str, seed: int = 0) -> tuple[str, str]:
    """What the output should say for an input email cell, per the fake's verdicts."""
    email = cell.strip().lower()
    if not email:
        return "no_email", ""
    if "@" not in email or "." not in email.split("@")[-1]:
        return "invalid_syntax", ""
    result, catch_all = verdict_for(email, seed)
    return result, "true" if catch_all else "false"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run the real `ample-batch` command in a subprocess."""
    full_env = {**os.environ, "AMPLEMARKET_API_KEY": KEY, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ample_batch", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def popen_cli(*args: str, key: str = KEY) -> subprocess.Popen[str]:
    """Start the real `ample-batch` command in a subprocess, for a test to act on while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "ample_batch", *args],
        env={**os.environ, "AMPLEMARKET_API_KEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Any, timeout: float = 60) -> None:
    """Poll `condition()` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never came true"
        time.sleep(0.01)


def batch_states(state: Path) -> list[tuple[str, str | None]]:
    db_path = state / "ample-batch.sqlite"
    if not db_path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(
                "SELECT state, next_href FROM batches WHERE source = 'api' ORDER BY id"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []

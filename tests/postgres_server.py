"""A real PostgreSQL server for the tests: initdb on a temp dir, `postgres` on a free loopback
port, one database per test, stopped at the end of the session.

The binaries come from $AMPLE_BATCH_PG_BIN, PATH or Debian's /usr/lib/postgresql/<version>/bin
(`.ci/run` installs the `postgresql` package when neither has them). PostgreSQL refuses to run
as root, so under root the server runs as `nobody` (Python's `subprocess` `user=`/`group=`, no
sudo needed) in a temp dir that user owns. Each xdist worker starts its own server; it stops
with the session, or with the test process if that is killed. Nothing here skips: a server
that cannot be found or started fails every test that asks for one, saying why.

Register the fixtures in a conftest with `from postgres_server import pg_url, postgres_server`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "ample"
"""The server's superuser; it logs in over TCP with PASSWORD (scram-sha-256)."""

PASSWORD = "pg-test-" + secrets.token_hex(8)

STARTUP_TIMEOUT = 30.0

PREFIX = "ample-batch-pg-"
"""The temp dirs' name prefix, in the system temp dir."""

STALE_AFTER = 600.0

# Durability off: a test server loses nothing that matters in a crash, and fsyncs are slow.
_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")


class ServerUnavailable(Exception):
    """PostgreSQL could not be found or started; the message says what to do."""


@dataclass
class PostgresServer:
    """A running server: connect through `url(dbname)`."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, dbname: str = "postgres", *, password: str | None = PASSWORD) -> str:
        login = USER if password is None else f"{USER}:{password}"
        return f"postgresql://{login}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside any transaction (CREATE DATABASE)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT: "fast" shutdown, which ends open sessions (SIGTERM would wait for them).
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def bin_dir() -> Path:
    """Where initdb and postgres are: $AMPLE_BATCH_PG_BIN if set, else PATH, else the newest
    Debian install."""
    if chosen := os.environ.get("AMPLE_BATCH_PG_BIN"):
        if not (Path(chosen) / "initdb").is_file():
            raise ServerUnavailable(f"AMPLE_BATCH_PG_BIN={chosen} holds no initdb")
        return Path(chosen)
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    raise ServerUnavailable(
        "PostgreSQL's initdb and postgres are neither on PATH nor in /usr/lib/postgresql; "
        "install PostgreSQL (apt-get install -y postgresql) or put its bin dir on PATH"
    )


def _as_unprivileged() -> dict[str, object]:
    """subprocess options that drop root to `nobody`: initdb and postgres refuse root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _stop_with_us() -> None:
    """In the server's child process: a SIGINT (fast shutdown) when this test process dies,
    even by SIGKILL, so a killed test run leaves no server behind (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG; cleared by a uid change, so set after


def _remove_stale() -> None:
    """Delete the dirs of servers gone with a killed test run: no postmaster.pid (a running
    server keeps one) and old enough that no other session is still in its initdb."""
    for old in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        with contextlib.suppress(OSError):
            if not (old / "data" / "postmaster.pid").exists() and (
                time.time() - old.stat().st_mtime > STALE_AFTER
            ):
                shutil.rmtree(old)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start() -> PostgresServer:
    """initdb a cluster in a new temp dir and start a server on it; ServerUnavailable if not."""
    bins = bin_dir()
    drop = _as_unprivileged()
    _remove_stale()
    base = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        (base / "pw").write_text(PASSWORD + "\n")
        if drop:
            for path in (base, base / "pw"):
                os.chown(path, drop["user"], drop["group"])
        env = {**os.environ, "HOME": str(base), "LC_ALL": "C"}
        env = {k: v for k, v in env.items() if not k.startswith("PG")}
        init = subprocess.run(
            [bins / "initdb", "-D", base / "data", "-U", USER, f"--pwfile={base / 'pw'}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
             "--no-sync", "--no-instructions"],
            env=env, capture_output=True, text=True, **drop,
        )  # fmt: skip
        if init.returncode != 0:
            raise ServerUnavailable(f"initdb failed ({init.returncode}): {init.stderr.strip()}")
        # A port picked free can be taken before postgres binds it: try a few.
        for _ in range(3):
            server = _launch(bins, base, _free_port(), env, drop)
            if server is not None:
                return server
        raise ServerUnavailable(f"postgres did not start: {_log_tail(base)}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _launch(
    bins: Path, base: Path, port: int, env: dict[str, str], drop: dict[str, object]
) -> PostgresServer | None:
    import psycopg

    settings = [arg for s in _FAST for arg in ("-c", s)]
    log = open(base / "log", "ab")  # noqa: SIM115 (the server writes it for its whole life)
    with log:
        process = subprocess.Popen(
            [bins / "postgres", "-D", base / "data", "-p", str(port), "-k", base,
             "-c", "listen_addresses=127.0.0.1", *settings],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_stop_with_us, **drop,
        )  # fmt: skip
    server = PostgresServer(base=base, port=port, process=process)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None  # most likely the port: the caller tries another
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            time.sleep(0.02)
    server.stop()
    raise ServerUnavailable(f"postgres was not ready in {STARTUP_TIMEOUT} s: {_log_tail(base)}")


def _log_tail(base: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join((base / "log").read_text(errors="replace").splitlines()[-5:])
    return "no log"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server per test session (per xdist worker)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL tests need psycopg: pip install -e '.[test]'", pytrace=False)
    try:
        server = start()
    except (ServerUnavailable, OSError) as exc:
        pytest.fail(f"no PostgreSQL server for the tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL (with password) to a new, empty database of this test's own, dropped after it."""
    name = "test_" + secrets.token_hex(6)
    postgres_server.admin(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.admin(f"DROP DATABASE {name} WITH (FORCE)")

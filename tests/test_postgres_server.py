"""The test server itself: it starts, checks passwords, and gives each test its own database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers import ROOT
from postgres_server import PostgresServer


def test_each_test_gets_an_empty_database_of_its_own(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT current_database(), current_setting('server_version_num')::int,"
            " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')"
        ).fetchone()
    assert row is not None
    name, version, tables = row
    assert name.startswith("test_") and version >= 150000 and tables == 0


def test_logins_need_the_password(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_server.url(password="wrong")).close()


def test_no_server_is_a_failure_never_a_skip(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from postgres_server import pg_url, postgres_server\n")
    (tmp_path / "test_needs_pg.py").write_text("def test_it(pg_url):\n    pass\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests"))),
        "AMPLE_BATCH_PG_BIN": str(tmp_path / "nowhere"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout and "skipped" not in done.stdout.lower()
    assert "no PostgreSQL server for the tests: AMPLE_BATCH_PG_BIN=" in done.stdout

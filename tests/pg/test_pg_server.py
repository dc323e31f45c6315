"""The test server itself: it starts, checks passwords, and gives each test its own database."""

from __future__ import annotations

import psycopg
import pytest
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

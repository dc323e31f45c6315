"""The PostgreSQL schema (ample_batch.pg_schema) and its migrations: created in its own schema,
idempotent, safe when hosts migrate at once, and the same tables as the SQLite state."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer

from ample_batch import pg, pg_schema
from ample_batch.errors import EXIT_USAGE, StateUnusable
from ample_batch.jobs.sqlite import db as sqlite_db

LATEST = len(pg_schema.MIGRATIONS)


def _tables(conn: psycopg.Connection, schema: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        (schema,),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def _applied(conn: psycopg.Connection, schema: str = pg.DEFAULT_SCHEMA) -> list[int]:
    rows = conn.execute(f'SELECT version FROM "{schema}".migrations ORDER BY version').fetchall()
    return [version for (version,) in rows]


def test_connect_creates_the_schema_and_every_table(pg_url: str) -> None:
    with pg.connect(pg_url) as conn:
        tables = _tables(conn, "ample_batch")
        assert pg.schema_version(conn, "ample_batch") == LATEST
        assert _applied(conn) == list(range(1, LATEST + 1))
        public = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert public.fetchone() == (0,)
    assert set(tables) == {
        "migrations", "jobs", "batches", "batch_emails", "verdicts", "rejected_emails",
        "ledgers", "ledger_entries",
    }  # fmt: skip


def test_the_job_tables_have_the_sqlite_states_columns(pg_url: str, tmp_path: Path) -> None:
    lite = sqlite_db.connect(tmp_path / sqlite_db.DB_NAME)
    try:
        names = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        expected = {
            name: {row[1] for row in lite.execute(f"PRAGMA table_info({name})")} for name in names
        }
    finally:
        lite.close()
    with pg.connect(pg_url) as conn:
        tables = _tables(conn, "ample_batch")
    assert {name: tables[name] for name in expected} == expected


def test_migrating_again_changes_nothing(pg_url: str) -> None:
    pg.connect(pg_url).close()
    with pg.connect(pg_url) as conn:
        assert pg.migrate(conn, url=pg_url) == LATEST
        assert _applied(conn) == list(range(1, LATEST + 1))


def test_another_schema_can_be_named(pg_url: str) -> None:
    with pg.connect(pg_url, schema="team_b") as conn:
        assert "jobs" in _tables(conn, "team_b")
        assert "jobs" not in _tables(conn, "ample_batch")
        conn.execute(
            "INSERT INTO jobs (id, input_path, fingerprint, email_column, created_at, updated_at,"
            " cache_cutoff) VALUES ('j', 'p', 'f', 'email', 0, 0, 0)"
        )
        assert conn.execute('SELECT count(*) FROM "team_b".jobs').fetchone() == (1,)


def test_without_migrate_nothing_is_created(pg_url: str) -> None:
    with pg.connect(pg_url, migrate=False) as conn:
        assert pg.schema_version(conn, "ample_batch") == 0
        assert conn.execute("SELECT to_regnamespace('ample_batch')").fetchone() == (None,)


def test_a_version_1_schema_with_jobs_in_it_migrates_to_the_latest(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
    with pg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO jobs (id, input_path, fingerprint, email_column, created_at,"
            " updated_at, cache_cutoff) VALUES ('j1', '/in.csv', 'f', 'Email', 1, 1, 0)"
        )
        conn.execute(
            "INSERT INTO batches (job_id, state, size, updated_at) VALUES ('j1', 'running', 1, 1)"
        )
    monkeypatch.undo()
    with pg.connect(pg_url) as conn:
        assert _applied(conn) == list(range(1, LATEST + 1))
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'ample_batch'"
        ).fetchall()
        assert ("batches_open",) in indexes
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (1,)


def test_a_schema_from_a_newer_ample_batch_is_refused(pg_url: str) -> None:
    with pg.connect(pg_url) as conn:
        conn.execute("INSERT INTO migrations (version) VALUES (%s)", (LATEST + 1,))
    with pytest.raises(StateUnusable, match="newer ample-batch") as caught:
        pg.connect(pg_url)
    assert caught.value.exit_code == EXIT_USAGE
    assert pg.redacted(pg_url) in caught.value.one_line()
    assert "pg-test-" not in caught.value.one_line()  # the test server's password


def test_hosts_migrating_at_once_take_turns(pg_url: str) -> None:
    # Without the advisory lock, concurrent CREATE SCHEMA / CREATE TABLE fail with unique
    # violations on the catalogs; with it, each migration runs exactly once.
    hosts = 6
    start = threading.Barrier(hosts)
    versions: list[int] = []
    errors: list[BaseException] = []

    def host() -> None:
        try:
            with pg.connect(pg_url, migrate=False) as conn:
                start.wait()
                versions.append(pg.migrate(conn, url=pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=host) for _ in range(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions == [LATEST] * hosts
    with pg.connect(pg_url) as conn:
        assert _applied(conn) == list(range(1, LATEST + 1))


def test_a_migration_that_fails_leaves_nothing_half_done(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = pg_schema.MIGRATIONS[0].replace(
        "CREATE TABLE {schema}.ledgers", "CREATE TABLE {schema}.ledgers (oops"
    )
    monkeypatch.setattr(pg_schema, "MIGRATIONS", [broken])
    with pytest.raises(Exception, match="please report it"):
        pg.connect(pg_url)
    monkeypatch.undo()
    with psycopg.connect(pg_url) as conn:
        assert "jobs" not in _tables(conn, "ample_batch")  # rolled back with the rest
        # The lock went with the failed migration: another migrator is not kept waiting.
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks.fetchone() == (0,)
    pg.connect(pg_url).close()


def test_a_user_granted_only_the_schema_can_migrate_it(
    pg_url: str, postgres_server: PostgresServer
) -> None:
    # A DBA who creates the schema and grants it, but not CREATE on the database.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
        conn.execute("CREATE SCHEMA ample_batch AUTHORIZATION app")
    url = pg_url.replace(pg_url.split("//")[1].split("@")[0], "app:app-pw")
    try:
        with pg.connect(url) as conn:
            assert pg.schema_version(conn, "ample_batch") == LATEST
        with pytest.raises(StateUnusable, match=r"permission denied.*grant the user") as caught:
            pg.connect(url, schema="other")
        assert "app-pw" not in caught.value.one_line()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA ample_batch CASCADE")
            conn.execute("DROP ROLE app")


def test_ledger_stamps_come_from_the_servers_clock(pg_url: str) -> None:
    with pg.connect(pg_url) as conn:
        conn.execute("INSERT INTO ledgers (key_id, ledger) VALUES ('k', 'usage')")
        before = time.time() * 1000
        conn.execute("INSERT INTO ledger_entries (key_id, ledger, ticket, weight)"
                     " VALUES ('k', 'usage', 't1', 500)")  # fmt: skip
        row = conn.execute(
            f"SELECT stamp_ms, {pg_schema.NOW_MS} - stamp_ms, paused_until_ms FROM ledger_entries"
            " JOIN ledgers USING (key_id, ledger)"
        ).fetchone()
    assert row is not None
    stamp, age, paused = row
    assert abs(stamp - before) < 60_000 and 0 <= age < 60_000 and paused == 0

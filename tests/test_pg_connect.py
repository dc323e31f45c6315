"""ample_batch.pg's connection: the URL checked, the driver optional, failures as our errors,
and never a password in a message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st
from postgres_server import PostgresServer

from ample_batch import pg
from ample_batch.errors import (
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    InputError,
    StateUnavailable,
    StateUnusable,
)

SECRET = "Zq7-s3cret"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    ["mysql://u:pw@db/x", "sqlite:///state.db", "postgresql:/one-slash", "host=db dbname=x", ""],
)
def test_anything_but_a_postgresql_url_is_bad_input(url: str) -> None:
    with pytest.raises(InputError, match="not a PostgreSQL URL") as caught:
        pg.connect(url)
    assert caught.value.exit_code == EXIT_USAGE


def test_a_url_libpq_cannot_parse_is_bad_input_without_its_password() -> None:
    url = f"postgresql://ana:{SECRET}@db.example/leads?no_such_option=1"
    with pytest.raises(InputError, match="no_such_option") as caught:
        pg.connect(url)
    assert SECRET not in caught.value.one_line()
    assert "postgresql://ana:***@db.example/leads" in caught.value.one_line()


def test_a_schema_name_must_be_a_plain_identifier() -> None:
    for bad in ("Leads", "1st", "a-b", 'x"; DROP', "x" * 64, ""):
        with pytest.raises(InputError, match="lower-case letters"):
            pg.check_schema(bad)
    assert pg.check_schema("team_2") == "team_2"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ana:{SECRET}@db/leads",
        f"postgres://ana:{SECRET}@db:5432,db2:5433/leads?sslmode=require",
        f"postgresql://ana@db/leads?password={SECRET}",
        f"postgresql://ana@db/leads?sslmode=verify-full&sslpassword={SECRET}",
        f"postgresql://ana@db/leads?pass%77ord={SECRET}",
        f"postgresql://ana:{SECRET}/with@slash@db/leads",
        f"postgresql://ana:{SECRET}?@db/leads?application_name=a@b",
        f"postgres://db/x?password={SECRET}@b",
        f"postgresql://ana:{SECRET.replace('-', '%2D')}@db/leads",
        f"postgresql://:{SECRET}@/leads?host=/var/run/postgresql",
    ],
)
def test_redacted_urls_hold_no_password(url: str) -> None:
    shown = pg.redacted(url)
    assert SECRET not in shown and SECRET.replace("-", "%2D") not in shown
    assert "***" in shown and shown.startswith(url[:12])


@given(
    password=st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1).map(
        lambda text: "SECRET" + text
    ),
    query=st.sampled_from(["", "?sslmode=require", "?application_name=a@b", "?password=x@y"]),
)
def test_no_password_survives_redaction(password: str, query: str) -> None:
    for url in (
        f"postgresql://ana:{password}@db/leads{query}",
        f"postgres://db/x?password={password}",
    ):
        assert "SECRET" not in pg.redacted(url)


def test_an_unreachable_server_is_exit_75_naming_the_url_without_its_password() -> None:
    url = f"postgresql://ana:{SECRET}@127.0.0.1:{_closed_port()}/leads"
    with pytest.raises(StateUnavailable) as caught:
        pg.connect(url)
    message = caught.value.one_line()
    assert caught.value.exit_code == EXIT_TEMPFAIL
    assert message.startswith(f"{pg.redacted(url)}: cannot be reached (")
    assert "run the same command again" in message
    assert SECRET not in message and "\n" not in message
    assert SECRET not in str(caught.value.__cause__)


def test_a_wrong_password_is_exit_2_without_the_password(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(password=SECRET)
    with pytest.raises(StateUnusable, match="the server refused us") as caught:
        pg.connect(url)
    assert caught.value.exit_code == EXIT_USAGE
    assert SECRET not in caught.value.one_line()


def test_a_missing_database_is_exit_2(postgres_server: PostgresServer) -> None:
    with pytest.raises(StateUnusable, match='database "no_such_db" does not exist'):
        pg.connect(postgres_server.url("no_such_db"))


def test_pgpassword_is_scrubbed_from_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", SECRET)
    said = pg.scrubbed(f"server said {SECRET}\n again", "postgresql://db/x")
    assert said == "server said *** again"


def test_a_lost_connection_is_exit_75(pg_url: str, postgres_server: PostgresServer) -> None:
    conn = pg.connect(pg_url)
    try:
        pid = conn.info.backend_pid
        postgres_server.admin(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(StateUnavailable, match="unavailable") as caught, pg.translated(pg_url):
            conn.execute("SELECT 1")
        assert caught.value.exit_code == EXIT_TEMPFAIL
        assert postgres_server.url().split("@")[0].split(":")[-1] not in caught.value.one_line()
    finally:
        conn.close()


def test_other_errors_are_left_alone_or_reported(pg_url: str) -> None:
    with pg.connect(pg_url) as conn:
        with pytest.raises(ValueError), pg.translated(pg_url):
            raise ValueError("not the database's")
        with pytest.raises(Exception, match="please report it") as caught, pg.translated(pg_url):
            conn.execute("SELECT no_such_column FROM jobs")
        assert caught.value.exit_code == 1  # type: ignore[attr-defined]
        assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedColumn)


def test_libpq_reads_the_pg_variables_and_url_parameters(
    pg_url: str, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(postgres_server.port))
    monkeypatch.setenv("PGUSER", "ample")
    monkeypatch.setenv("PGPASSWORD", pg_url.split(":")[2].split("@")[0])
    for url in (f"postgres:///{dbname}", f"postgresql:///{dbname}?sslmode=disable"):
        with pg.connect(url) as conn:
            assert conn.info.dbname == dbname and conn.info.port == postgres_server.port


def test_the_connection_is_autocommit_on_our_schema(pg_url: str) -> None:
    with pg.connect(pg_url) as conn:
        assert conn.autocommit
        row = conn.execute(
            "SELECT current_schemas(false), current_setting('application_name')"
        ).fetchone()
    assert row == (["ample_batch"], "ample-batch")


def test_without_psycopg_a_state_url_names_the_extra() -> None:
    # psycopg hidden as if not installed: `import psycopg` raises ImportError.
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import ample_batch, ample_batch.pg as pg\n"
        "from ample_batch.errors import AmpleBatchError\n"
        "try:\n"
        f"    pg.connect('postgresql://ana:{SECRET}@127.0.0.1:1/leads')\n"
        "except AmpleBatchError as exc:\n"
        "    print(exc.exit_code, exc.one_line())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stderr == ""
    assert done.stdout == (
        "2 --state-url needs the PostgreSQL driver, an optional extra: "
        "pip install 'ample-batch[postgres]'\n"
    )


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        (f"host=db user=ana password={SECRET} dbname=leads", SECRET),
        (f"host=db password = '{SECRET} with spaces' dbname=leads", f"{SECRET} with spaces"),
        (f"host=db sslpassword={SECRET}", SECRET),
        (f"PASSWORD={SECRET}", SECRET),
    ],
)
def test_a_keyword_form_setting_is_refused_without_its_password(dsn: str, password: str) -> None:
    # A secret holding libpq's `key=value` form instead of a URL is echoed in the error.
    with pytest.raises(InputError) as caught:
        pg.check_url(dsn)
    assert SECRET not in str(caught.value) and "***" in str(caught.value)
    assert SECRET not in pg.scrubbed(f"server said {password}", dsn)


def test_a_schema_too_long_for_its_simulated_twin_names_the_option() -> None:
    from ample_batch.jobs.backend import State

    state = State(Path("/s"), url="postgresql://ana@db/leads", schema="a" * 60)
    with pytest.raises(InputError, match=r"--state-schema a{60}: at most 53 characters"):
        state.simulated("simulated")
    assert State(Path("/s"), url="postgresql://db/x", schema="a" * 53).simulated("x").schema == (
        "a" * 53 + "_simulated"
    )


def _tcp_settings(conn: psycopg.Connection) -> dict[str, int]:
    """The keepalive settings as the connection's own socket holds them."""
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        return {
            "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }
    finally:
        sock.close()


def test_a_silent_network_partition_is_found_in_seconds_unless_the_url_says(
    pg_url: str,
) -> None:
    conn = pg.connect(pg_url, migrate=False)
    try:
        assert _tcp_settings(conn) == pg.KEEPALIVES
    finally:
        conn.close()
    conn = pg.connect(pg_url + "?keepalives_idle=77&tcp_user_timeout=0", migrate=False)
    try:
        assert _tcp_settings(conn) == {
            **pg.KEEPALIVES,
            "keepalives_idle": 77,
            "tcp_user_timeout": 0,
        }
    finally:
        conn.close()

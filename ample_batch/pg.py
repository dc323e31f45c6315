"""The PostgreSQL state backend's connection: the `--state-url` checked, connected, migrated,
and psycopg's errors translated to ours, never showing a password.

psycopg is the optional `postgres` extra, so it is imported inside the functions that need it:
`import ample_batch` works without it, and only a `--state-url` asks for it.

    >>> redacted("postgresql://ana:s3cret@db.example:5432/leads?sslmode=require")
    'postgresql://ana:***@db.example:5432/leads?sslmode=require'
    >>> content_job_id("9f2c" * 10, "email")
    '0a5af1e173ad'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import pg_schema
from .errors import InputError, StateFailed, StateUnavailable, StateUnusable

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

DEFAULT_SCHEMA = "ample_batch"
"""The PostgreSQL schema holding every table of ours, unless another is named."""

INSTALL_HINT = "pip install 'ample-batch[postgres]'"

SCHEMES = ("postgresql://", "postgres://")

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when neither the URL nor PGCONNECT_TIMEOUT says: libpq's
own default is to wait forever on a host that drops packets."""

MAX_SCHEMA_LENGTH = 63
"""PostgreSQL's longest identifier (NAMEDATALEN - 1)."""

_SCHEMA_NAME = re.compile(rf"[a-z_][a-z0-9_]{{0,{MAX_SCHEMA_LENGTH - 1}}}")

# Query parameters whose values are secrets (libpq's `password` and `sslpassword`).
_SECRET_PARAM = re.compile(r"([?&])([^=&#]*=)([^&#]*)")

# The same in libpq's keyword form (`host=db password='s e' dbname=x`), which a mistyped
# setting may hold instead of a URL: a value is quoted (with \\ escapes) or runs to a space.
_SECRET_KEYWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.I)


def check_url(url: str) -> str:
    """`url` if it is a PostgreSQL URL, else InputError (exit 2); libpq checks the rest.

    >>> check_url("postgres:///leads")
    'postgres:///leads'
    >>> check_url("mysql://db/leads")
    Traceback (most recent call last):
    ...
    ample_batch.errors.InputError: --state-url mysql://db/leads: not a PostgreSQL URL; write postgresql://user@host:port/dbname
    >>> check_url("postgresql://ana@db/leads\\n")   # a secret file's last newline
    'postgresql://ana@db/leads'
    """
    url = url.strip()
    if not url.startswith(SCHEMES):
        raise InputError(
            f"--state-url {redacted(url)}: not a PostgreSQL URL; write "
            "postgresql://user@host:port/dbname"
        )
    return url


def check_schema(name: str) -> str:
    """`name` if it is a plain lower-case identifier PostgreSQL keeps as written, else
    InputError (exit 2).

    >>> check_schema("team_2")
    'team_2'
    """
    if not _SCHEMA_NAME.fullmatch(name):
        raise InputError(
            f"schema {name!r}: use lower-case letters, digits and '_' (at most 63, not "
            "starting with a digit)"
        )
    return name


def redacted(url: str) -> str:
    """`url` without its password: the user-info's and any `password`/`sslpassword` parameter's.

    Everything up to the last `@` counts as user-info, so even a password holding an
    unescaped `/`, `?` or `@` is hidden (an `@` in a parameter may hide more than the password).

    >>> redacted("postgres://ana@db/leads?password=x&sslpassword=y&sslmode=verify-full")
    'postgres://ana@db/leads?password=***&sslpassword=***&sslmode=verify-full'
    >>> redacted("postgresql://ana:p/w?@d@db/leads")
    'postgresql://ana:***@db/leads'
    >>> redacted("host=db user=ana password='s3 cret' dbname=leads")
    'host=db user=ana password=*** dbname=leads'
    >>> [redacted(u) for u in ("ana:pw@db/x", "postgresql:/ana:pw@db/x", "//ana:pw@db/x")]
    ['ana:***@db/x', 'postgresql:***@db/x', '//ana:***@db/x']
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # A mistyped URL (`postgresql:/ana:pw@db`) or libpq's keyword form: both are hidden.
        scheme, rest = "", _SECRET_KEYWORD.sub(lambda m: f"{m.group(1)}***", url)
    if "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{hostpart}"
    return scheme + sep + _SECRET_PARAM.sub(_hide_secret, rest)


def _hide_secret(match: re.Match[str]) -> str:
    key = unquote(match.group(2)[:-1]).strip().lower()
    return match.group(0) if "password" not in key else f"{match.group(1)}{match.group(2)}***"


def _secrets(url: str) -> list[str]:
    """Every password `url` (and PGPASSWORD) may hold, as written and decoded: scrubbed from
    any message, in case a driver or server message ever repeats one."""
    found = [os.environ.get("PGPASSWORD", "")]
    rest = url.partition("://")[2]
    # The user-info as libpq reads it (up to the first `@` before any `/`), and as `redacted`.
    libpq = rest.split("/", 1)[0]
    for userinfo in (libpq.partition("@")[0] if "@" in libpq else "", rest.rpartition("@")[0]):
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    for match in _SECRET_PARAM.finditer(url):
        if "password" in unquote(match.group(2)[:-1]).lower():
            found.append(match.group(3))
    if "://" not in url:
        found += [m.group(2).strip("'") for m in _SECRET_KEYWORD.finditer(url)]
    both = found + [unquote(s) for s in found]
    return sorted({s for s in both if s}, key=len, reverse=True)


def scrubbed(text: str, url: str) -> str:
    """`text` on one line, with any password of `url`'s replaced by `***`.

    >>> scrubbed("auth failed for hunter2\\n  try again", "postgresql://u:hunter2@h/d")
    'auth failed for *** try again'
    """
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return " ".join(text.split())


def content_job_id(fingerprint: str, email_column: str, *, sheet: str | None = None) -> str:
    """A job's id from what it is, not where the file lies: the same content and email column
    give the same job on any host and under any path (the shared state's job identity).

    `fingerprint` is `files.inspect.fingerprint`, a hash of the file's bytes alone. `sheet`
    (`InputSpec.identity_sheet`: None for the sheet read without --sheet, whose ids so stay
    as they were) keeps two sheets of one workbook apart. The prefix keeps these ids
    apart from the SQLite store's path-based `jobs.records.job_id_for` ones.
    """
    parts = ("content", fingerprint, email_column, *(() if sheet is None else ("sheet", sheet)))
    digest = hashlib.sha256("\0".join(parts).encode())
    return digest.hexdigest()[:12]


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for `pg_advisory_lock`, the same in every process and host.

    Advisory locks are per database, not per schema: put the schema among `parts`.

    >>> advisory_key("migrate", "ample_batch") == advisory_key("migrate", "ample_batch")
    True
    """
    digest = hashlib.blake2b("\0".join(("ample-batch", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise InputError(
            f"--state-url needs the PostgreSQL driver, an optional extra: {INSTALL_HINT}"
        ) from exc
    return psycopg


KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 4,
    "tcp_user_timeout": 30_000,
}
"""TCP settings (libpq's names; seconds, the last in ms) that find a server cut off without a
word within about 30 s, where the system's defaults wait hours (idle) or ~15 minutes (unsent
data): a run waiting on it would hold its job, Ctrl-C and --max-runtime that long. Any the
URL (or a libpq environment variable, or a service file) sets wins."""


def connect(url: str, *, schema: str = DEFAULT_SCHEMA, migrate: bool = True) -> Connection:
    """Connect to the state database at `url` (autocommit: transactions are explicit, with
    `conn.transaction()`), with `schema` first on the search path, migrated unless told not.

    libpq reads the rest as usual: PG* environment variables, `sslmode` and the other URL
    parameters, `~/.pgpass`. Raises InputError (exit 2) for a bad URL or a missing driver,
    StateUnavailable (exit 75) when the server cannot be reached, StateUnusable (exit 2)
    when it refuses us; every message shows the URL without its password.
    """
    url = check_url(url)
    check_schema(schema)
    psycopg = _psycopg()
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InputError(
            f"--state-url {redacted(url)}: {scrubbed(str(exc), url)}; write "
            "postgresql://user@host:port/dbname"
        ) from exc
    extra: dict[str, Any] = {"autocommit": True, "fallback_application_name": "ample-batch"}
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        extra["connect_timeout"] = CONNECT_TIMEOUT
    # A service file may set them: it is the user's word, so ours stay out of its way.
    if "service" not in given and not os.environ.get("PGSERVICE"):
        # Each option's environment variable, for those this libpq knows (tcp_user_timeout
        # came with libpq 12).
        known = {
            option.keyword.decode(): (option.envvar or b"").decode()
            for option in psycopg.pq.Conninfo.get_defaults()
        }
        for name, value in KEEPALIVES.items():
            if name in known and name not in given and not os.environ.get(known[name] or "-"):
                extra[name] = value
    with translated(url, connecting=True):
        conn: Connection = psycopg.connect(url, **extra)
    try:
        with translated(url):
            conn.execute("SELECT set_config('search_path', %s, false)", (pg_schema.quoted(schema),))
            if migrate:
                _migrate(conn, schema, url)
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: Connection, schema: str) -> int:
    """The last migration applied to `schema`; 0 when it has none (or does not exist)."""
    table = f"{pg_schema.quoted(schema)}.{pg_schema.MIGRATIONS_TABLE}"
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute(f"SELECT coalesce(max(version), 0) FROM {table}").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: Connection, schema: str = DEFAULT_SCHEMA, url: str = "") -> int:
    """Bring `schema` up to date (creating it if need be); returns its version.

    Each migration is one transaction. Migrating processes take turns through an advisory
    lock, so two hosts starting at once never run a migration twice; the lock is the
    session's, so a migrator that dies frees it with its connection.
    """
    check_schema(schema)
    with translated(url or "the state database"):
        return _migrate(conn, schema, url or "the state database")


def _migrate(conn: Connection, schema: str, url: str) -> int:
    latest = len(pg_schema.MIGRATIONS)
    version = schema_version(conn, schema)
    if version == latest:
        return version
    lock = advisory_key("migrate", schema)
    conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
    try:
        # Checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
        # the schema exists, and a DBA may have made it and granted us only the schema.
        exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()
        name = pg_schema.quoted(schema)
        with conn.transaction():
            if not (exists and exists[0]):
                conn.execute(f"CREATE SCHEMA {name}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name}.{pg_schema.MIGRATIONS_TABLE} ("
                " version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
        version = schema_version(conn, schema)
        if version > latest:
            raise StateUnusable(
                f"{redacted(url)}: schema {schema} was written by a newer ample-batch (version "
                f"{version}, this one knows {latest}); upgrade ample-batch, or name another schema"
            )
        for number in range(version + 1, latest + 1):
            with conn.transaction():
                conn.execute(pg_schema.script(number, schema))
                conn.execute(
                    f"INSERT INTO {name}.{pg_schema.MIGRATIONS_TABLE} (version) VALUES (%s)",
                    (number,),
                )
        return latest
    finally:
        # A lost connection has freed the lock already; the error that lost it is the news.
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))


# SQLSTATE classes and codes, https://www.postgresql.org/docs/current/errcodes-appendix.html
_AGAIN_CLASSES = ("08", "40", "53", "57")  # connection, rollback, resources, operator
_AGAIN_CODES = ("55P03", "25006")  # lock_not_available, read_only_sql_transaction
_REFUSED_CODES = ("28000", "28P01", "3D000")  # not authorised, bad password, no such db
# A failed connection carries no SQLSTATE (libpq has no result to hold one), so the refusals
# a rerun cannot cure are told apart by libpq's and the server's (English) words; any other
# failure to connect, in whatever language, is "cannot be reached" (exit 75).
_REFUSED = re.compile(
    r"authentication failed|no pg_hba\.conf entry|does not exist|no password supplied"
    r"|permission denied|certificate"
)


@contextlib.contextmanager
def translated(url: str, *, connecting: bool = False) -> Iterator[None]:
    """psycopg's errors as ours, naming the redacted URL and what to do: StateUnavailable
    (exit 75) where a rerun will succeed, StateUnusable (exit 2) where the user must act,
    StateFailed (exit 1) for the rest."""
    try:
        yield
    except Exception as exc:
        error = state_error(url, exc, connecting=connecting)
        if error is None:
            raise
        raise error from exc


def state_error(
    url: str, exc: BaseException, *, connecting: bool = False
) -> StateUnavailable | StateUnusable | StateFailed | None:
    """Our error for psycopg's `exc`; None when `exc` is not psycopg's."""
    psycopg = _psycopg()
    if not isinstance(exc, psycopg.Error):
        return None
    where, reason = redacted(url), scrubbed(str(exc), url)
    code = getattr(exc, "sqlstate", None) or ""
    if code in _REFUSED_CODES:
        return StateUnusable(
            f"{where}: the server refused us ({reason}); fix the user, password or database "
            "name in --state-url (or PGUSER, PGPASSWORD, ~/.pgpass)"
        )
    if code == "42501":
        return StateUnusable(
            f"{where}: permission denied ({reason}); grant the user CREATE on the database "
            "(or all privileges on the schema), then run the same command again"
        )
    if connecting and _REFUSED.search(reason):
        return StateUnusable(
            f"{where}: the server refused us ({reason}); fix the user, password, database "
            "or TLS settings in --state-url (or PGUSER, PGPASSWORD, ~/.pgpass)"
        )
    if connecting and isinstance(exc, psycopg.OperationalError) and not code:
        return StateUnavailable(
            f"{where}: cannot be reached ({reason}); check that the server is up and reachable, "
            "then run the same command again"
        )
    lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not code
    if lost or code.startswith(_AGAIN_CLASSES) or code in _AGAIN_CODES:
        return StateUnavailable(
            f"{where}: the state database is unavailable ({reason}); run the same command "
            "again later"
        )
    return StateFailed(f"{where}: the state database failed ({reason}); please report it")

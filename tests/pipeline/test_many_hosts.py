"""Many hosts on one key and one `--state-url`: the shared quota, the shared cache, a job taken
over after a kill -9, and the database going away.

A "host" is a process with its own HOME, `--state-dir` and working directory (and its own copy
of the input, under another path); all share the PostgreSQL database the suite starts and one
fake API, whose request log and charge counts say what the hosts did together.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
from helpers import KEY, FakeInThread, lead_rows, read_csv, wait_until, write_leads

from ample_batch.limits import Limit
from ample_batch.pg import advisory_key

_AS_HOST = (
    "import socket; socket.gethostname = lambda: {name!r}; "
    "from ample_batch.cli.main import entry; entry()"
)
# A run in a PID namespace of its own (a container sharing the host's name): its job lock
# records the pid that namespace gives it, which on this side may be another process's.
_IN_PID_NAMESPACE = (
    "import types, ample_batch.jobs.postgres.locks as locks; "
    "locks.os = types.SimpleNamespace(getpid=lambda: {pid}); "
    "from ample_batch.cli.main import entry; entry()"
)

SCHEMA = "ample_batch"

LIMITS = ("--usage-limit", "40/1s", "--rate-limit", "200/1s", "--chunk-size", "10")
FAKE = {"retry_after": 0.2, "emails_per_second": 4000}


@dataclass
class Host:
    """One machine: its home, working dir and state dir, all its own."""

    root: Path
    url: str
    hostname: str | None = None
    """Another machine's name for this host's runs (socket.gethostname, as they see it)."""
    pid: int | None = None
    """The pid its runs' locks record, as their own PID namespace numbers them."""

    def __post_init__(self) -> None:
        for folder in ("home", "work"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def put(self, src: Path) -> Path:
        """The input, copied to this host's working dir (another path, the same content)."""
        return Path(shutil.copy(src, self.root / "work" / src.name))

    def command(self, *args: str) -> list[str]:
        program = ["-m", "ample_batch"]
        if self.hostname is not None:
            program = ["-c", _AS_HOST.format(name=self.hostname)]
        if self.pid is not None:
            program = ["-c", _IN_PID_NAMESPACE.format(pid=self.pid)]
        return [sys.executable, *program, *args, "--state-dir", str(self.state_dir)]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root / "home"),
            "AMPLEMARKET_API_KEY": KEY,
            "AMPLE_BATCH_STATE_URL": self.url,
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.root / "work",
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root / "work",
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def validate(host: Host, src: Path, fake: FakeInThread, *extra: str) -> list[str]:
    return ["validate", str(src), "--base-url", fake.url, *LIMITS, *extra]


def batch_states(url: str) -> list[str]:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT state FROM ample_batch.batches WHERE source = 'api' ORDER BY id"
            ).fetchall()
    except psycopg.Error:
        return []  # not created yet
    return [state for (state,) in rows]


def _between_posts(states: list[str]) -> bool:
    sent = sum(state in ("running", "fetching", "done") for state in states)
    return sent >= 4 and "planned" in states and "submitting" not in states


def terminate_sessions(url: str) -> None:
    """What a database restart does to every open session (ours included)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_verdict_bought_on_one_host_is_reused_on_another(pg_url: str, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(30))
    one, two = Host(tmp_path / "one", pg_url), Host(tmp_path / "two", pg_url)
    with FakeInThread(**FAKE) as fake:
        first = one.run(*validate(one, one.put(src), fake))
        assert first.returncode == 0, first.stderr
        spent = fake.summary().credits_spent
        # The same content under another path on another host: the same job, nothing bought.
        second = two.run(*validate(two, two.put(src), fake))
        assert second.returncode == 0, second.stderr
        assert fake.summary().credits_spent == spent == 30
        # A new list sharing half of the emails buys only the other half.
        mixed = write_leads(tmp_path / "mixed.csv", lead_rows(30, start=15))
        third = two.run(*validate(two, two.put(mixed), fake))
        assert third.returncode == 0, third.stderr
        assert fake.summary().credits_spent == 45
    for host in (one, two):
        assert not host.state_dir.exists()  # nothing written under --state-dir
    assert read_csv(one.root / "work" / "leads.validated.csv") == read_csv(
        two.root / "work" / "leads.validated.csv"
    )
    status = one.run("status", "--json")
    assert status.returncode == 0 and status.stdout.count('"id"') == 2


def test_two_jobs_on_two_hosts_at_once_keep_the_usage_limit(pg_url: str, tmp_path: Path) -> None:
    hosts = [Host(tmp_path / name, pg_url) for name in ("one", "two")]
    lists = [write_leads(tmp_path / f"l{n}.csv", lead_rows(60, start=n * 100)) for n in (0, 1)]
    # The fake enforces the limit itself (429 usage_limit_exceeded) and keeps the peak.
    with FakeInThread(**FAKE, usage_limit=Limit(40, 1.0), clock_skew=3.0) as fake:
        runs = [
            h.start(*validate(h, h.put(src), fake)) for h, src in zip(hosts, lists, strict=True)
        ]
        outcomes = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], [err for _, err in outcomes]
        summary = fake.summary()
    assert summary.emails_submitted == 120 and summary.emails_charged_twice == 0
    assert summary.usage_limited == 0
    assert summary.peak_emails_in_window <= 40


def test_a_job_killed_on_one_host_is_finished_by_another_without_paying_twice(
    pg_url: str, tmp_path: Path
) -> None:
    rows = lead_rows(60)
    src = write_leads(tmp_path / "leads.csv", rows)
    one, two = Host(tmp_path / "one", pg_url), Host(tmp_path / "two", pg_url)
    with FakeInThread(**FAKE) as fake:
        run = one.start(*validate(one, one.put(src), fake))
        # Killed while it waits for quota (40/1s: 4 batches of 10 out, 2 to go), not mid-POST:
        # a POST killed in flight is a possible double charge by design, on any backend.
        wait_until(lambda: _between_posts(batch_states(pg_url)) or run.poll() is not None)
        assert run.poll() is None, "the run finished before the kill"
        run.send_signal(signal.SIGKILL)
        run.wait()
        # The dead host's connection is gone, and its job lock with it: no wait, no JobBusy.
        taken = two.run(*validate(two, two.put(src), fake))
        assert taken.returncode == 0, taken.stderr
        summary = fake.summary()
    assert summary.emails_charged_twice == 0 and summary.credits_spent == 60
    assert len(read_csv(two.root / "work" / "leads.validated.csv")) == len(rows)


def test_status_names_the_host_and_cancel_stops_a_run_of_this_host(
    pg_url: str, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(80))
    one = Host(tmp_path / "one", pg_url)
    with FakeInThread(**FAKE) as fake:
        run = one.start(*validate(one, one.put(src), fake, "--usage-limit", "10/1s"))
        wait_until(lambda: "running" in batch_states(pg_url) or run.poll() is not None)
        status = one.run("status", "--json")
        assert f'"pid": {run.pid}' in status.stdout and socket.gethostname() in status.stdout
        job = re.findall(r'"id": "(\w+)"', status.stdout)[0]
        cancel = one.run("cancel", job, "--base-url", fake.url, "--usage-limit", "10/1s")
        assert cancel.returncode == 0, cancel.stderr
        _, err = run.communicate(timeout=60)
        assert run.returncode == 75, err


def test_a_database_down_at_start_is_exit_75_naming_it_without_the_password(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://ana:s3cret-pw@127.0.0.1:{port}/leads"
    host = Host(tmp_path / "one", url)
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    done = host.run("validate", str(host.put(src)), "--base-url", "http://127.0.0.1:9")
    assert done.returncode == 75, done.stderr
    assert f"postgresql://ana:***@127.0.0.1:{port}/leads" in done.stderr
    assert "cannot be reached" in done.stderr and "s3cret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and not host.state_dir.exists()


def test_a_database_lost_mid_run_is_retried_and_nothing_is_paid_twice(
    pg_url: str, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(60))
    one = Host(tmp_path / "one", pg_url)
    with FakeInThread(**FAKE) as fake:
        run = one.start(*validate(one, one.put(src), fake))
        wait_until(lambda: "running" in batch_states(pg_url) or run.poll() is not None)
        terminate_sessions(pg_url)
        _, err = run.communicate(timeout=120)
        # Reconnected (0), or stopped cleanly to resume (75): never a traceback or exit 1.
        assert run.returncode in (0, 75), err
        assert "Traceback" not in err
        again = one.run(*validate(one, one.put(src), fake))
        assert again.returncode == 0, again.stderr
        summary = fake.summary()
    assert summary.emails_charged_twice == 0 and summary.credits_spent == 60


def test_without_the_postgres_extra_a_state_url_is_exit_2_naming_it(tmp_path: Path) -> None:
    host = Host(tmp_path / "one", "postgresql://db.example/leads")
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    # psycopg made unimportable, as in an install without the extra.
    script = (
        "import sys; sys.modules['psycopg'] = None; from ample_batch.cli.main import entry; entry()"
    )
    for args in (["validate", str(host.put(src)), "--simulate"], ["status"]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args, "--state-dir", str(host.state_dir)],
            env=host.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "pip install 'ample-batch[postgres]'" in done.stderr
        assert "Traceback" not in done.stderr


def test_cancel_reaches_a_run_on_another_host(pg_url: str, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(80))
    there = Host(tmp_path / "there", pg_url, hostname="host-b")
    here = Host(tmp_path / "here", pg_url)
    with FakeInThread(**FAKE) as fake:
        run = there.start(*validate(there, there.put(src), fake, "--usage-limit", "10/1s"))
        wait_until(lambda: "running" in batch_states(pg_url) or run.poll() is not None)
        status = here.run("status")
        assert f"running in process {run.pid} on host host-b" in status.stdout, status.stdout
        job = re.findall(rf"(\w+): running in process {run.pid}", status.stdout)[0]
        # No signal can cross hosts: the run sees the request in the database and stops.
        cancel = here.run("cancel", job, "--base-url", fake.url, "--usage-limit", "10/1s")
        assert cancel.returncode == 0, cancel.stderr
        _, err = run.communicate(timeout=60)
        assert run.returncode == 75, err
        assert "canceled" in here.run("status").stdout


def test_cancel_on_shared_state_signals_no_process_of_this_host(
    pg_url: str, tmp_path: Path
) -> None:
    """The run's lock names a pid that, on this side of its PID namespace, is an unrelated
    process (here a sleep): cancel must not signal it, and the run stops all the same."""
    src = write_leads(tmp_path / "leads.csv", lead_rows(80))
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        there = Host(tmp_path / "there", pg_url, pid=bystander.pid)
        with FakeInThread(**FAKE) as fake:
            run = there.start(*validate(there, there.put(src), fake, "--usage-limit", "10/1s"))
            wait_until(lambda: "running" in batch_states(pg_url) or run.poll() is not None)
            status = there.run("status")
            assert f"running in process {bystander.pid}" in status.stdout, status.stdout
            job = re.findall(r"(\w+): running in process", status.stdout)[0]
            cancel = there.run("cancel", job, "--base-url", fake.url, "--usage-limit", "10/1s")
            assert cancel.returncode == 0, cancel.stderr
            _, err = run.communicate(timeout=60)
            assert run.returncode == 75, err
        assert bystander.poll() is None, "cancel signalled a process that was not the run"
    finally:
        bystander.kill()
        bystander.wait()


def _posts(fake: FakeInThread) -> int:
    return sum(record.method == "POST" for record in list(fake.api.log))


def test_a_run_that_lost_its_lock_to_another_host_posts_nothing_more(
    pg_url: str, tmp_path: Path
) -> None:
    """The run's lock connection dies (a failover, a proxy) and host B takes the job at
    once: the run's next claim sees it (the fence) and nothing more is POSTed, not even
    before its cancel watcher's next look. Deterministic: the claims wait behind the store's
    write lock while no POST is in flight, and host B queues for the job lock so that it has
    it the instant the server frees it."""
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    one = Host(tmp_path / "one", pg_url)
    limits = ("--usage-limit", "100000/1s", "--rate-limit", "6/1s", "--chunk-size", "10")
    with (
        FakeInThread(**FAKE) as fake,
        psycopg.connect(pg_url, autocommit=True) as claims,
        psycopg.connect(pg_url, autocommit=True, application_name="host-b") as host_b,
    ):
        run = one.start(*validate(one, one.put(src), fake, *limits))
        wait_until(lambda: batch_states(pg_url).count("running") >= 2 or run.poll() is not None)
        assert run.poll() is None, "the run finished before its lock was lost"
        while True:
            claims.execute("BEGIN")
            claims.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("store", SCHEMA),))
            if "submitting" not in batch_states(pg_url):
                break  # no POST claimed and unsent; none can be claimed until COMMIT
            claims.execute("ROLLBACK")
        (job_id,) = host_b.execute(f"SELECT id FROM {SCHEMA}.jobs").fetchone() or ("",)
        job_key = advisory_key(SCHEMA, "job", job_id)
        queued = threading.Thread(
            target=lambda: host_b.execute("SELECT pg_advisory_lock(%s)", (job_key,))
        )
        queued.start()
        wait_until(lambda: _waiting_for_a_lock(claims, "host-b"))
        claims.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'ample-batch % run %'"
        )
        queued.join(timeout=10)
        assert not queued.is_alive(), "host B never got the job's lock"
        posted = _posts(fake)
        job_row = f"SELECT state, stats, updated_at FROM {SCHEMA}.jobs"
        owned = host_b.execute(job_row).fetchone()
        claims.execute("COMMIT")
        _, err = run.communicate(timeout=60)
        assert _posts(fake) == posted, "POSTed after host B took the job"
        assert run.returncode == 75, err
        assert "lost the job's lock to another run" in err
        assert fake.summary().emails_charged_twice == 0
        # Nor does it write its outcome over the job that host B owns now.
        assert host_b.execute(job_row).fetchone() == owned


def _waiting_for_a_lock(conn: psycopg.Connection, application_name: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.application_name = %s",
        (application_name,),
    ).fetchone()
    return bool(row and row[0])

"""The quick commands stay quick: `--help` and `status` (and `report`), on a state dir or a
`--state-url`, load no aiohttp, pyarrow or polars, and the fake API loads only for
`mock-server` (and `--simulate`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ample_batch.cli.main import LAZY_COMMANDS

HEAVY = ("aiohttp", "pyarrow", "polars", "ample_batch.fake")

PROBE = """
import json, sys
from ample_batch.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
heavy = sorted({m for m in sys.modules if m.split(".")[0] in ("aiohttp", "pyarrow", "polars")
                or m.startswith("ample_batch.fake")})
print(json.dumps(heavy), file=sys.stderr)
"""


def loaded(*args: str) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after running the command."""
    return probe(*args)[0]


def probe(*args: str) -> tuple[set[str], str]:
    """The heavy modules loaded after running the command, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    modules = json.loads(done.stderr.strip().splitlines()[-1])
    heavy = {next(h for h in HEAVY if m == h or m.startswith(h + ".")) for m in modules}
    return heavy, done.stdout + done.stderr


@pytest.mark.parametrize("args", [["--help"], ["status"], ["cancel", "--help"]])
def test_quick_commands_load_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    if args == ["status"]:
        args = [*args, "--state-dir", str(tmp_path)]
    assert loaded(*args) == set()


def test_status_and_report_on_a_state_url_load_nothing_heavy(tmp_path: Path, pg_url: str) -> None:
    state = ["--state-url", pg_url, "--state-dir", str(tmp_path / "s")]
    heavy, said = probe("status", *state)  # no schema yet: nothing to open
    assert heavy == set() and "no jobs in this state database" in said, said
    from ample_batch.jobs.postgres.store import PgStore

    with PgStore(pg_url) as store:
        job = store.open_job(
            input_path="/data/leads.csv",
            fingerprint="f" * 40,
            email_column="Email",
            output_path=None,
            cache_ttl=0,
        )
    for args in (["status"], ["status", job.id[:4], "--json"]):
        heavy, said = probe(*args, *state)  # the store, its progress and its advisory locks
        assert heavy == set() and job.id in said, said
    page = tmp_path / "r.html"
    heavy, said = probe("report", "-o", str(page), *state)
    assert heavy == set() and page.exists(), said
    assert not (tmp_path / "s").exists()


def test_mock_server_loads_the_fake_when_asked() -> None:
    assert {"ample_batch.fake", "aiohttp"} <= loaded("mock-server", "--help")


def test_lazy_commands_list_their_own_first_help_line() -> None:
    for name, (module, attribute, help_text) in LAZY_COMMANDS.items():
        command = getattr(__import__(module, fromlist=[attribute]), attribute)
        assert command.name == name
        assert (command.help or "").splitlines()[0] == help_text


def test_status_looking_at_a_trial_loads_nothing_heavy(tmp_path: Path) -> None:
    from ample_batch.jobs.sqlite.store import Store

    with Store(tmp_path / "simulated") as store:  # a --simulate run's job, beside no real one
        job = store.open_job(
            input_path="/data/leads.csv",
            fingerprint="f" * 40,
            email_column="Email",
            output_path=None,
            cache_ttl=0,
        )
    heavy, said = probe("status", "--state-dir", str(tmp_path))  # counts the trial's jobs
    assert heavy == set() and "(1 simulated job: add --simulate)" in said, said
    heavy, said = probe("status", "--simulate", "--state-dir", str(tmp_path))
    assert heavy == set() and job.id in said, said

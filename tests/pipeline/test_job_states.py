"""The job states `status` shows: each one defined in the README and named in the help."""

from __future__ import annotations

import re

from click.testing import CliRunner
from helpers import ROOT

from ample_batch.cli.main import main
from ample_batch.pipeline.job_states import MEANINGS, RUNNING, STOPPED, shown_state


def test_every_state_status_can_show_is_defined_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.findall(r"^  \| `(\w+)` \| (.+) \|$", readme, re.M)
    assert [state for state, _ in table] == list(MEANINGS)


def test_status_help_names_every_state() -> None:
    text = " ".join(CliRunner().invoke(main, ["status", "--help"]).output.split())
    for state in MEANINGS:
        assert state in text


def test_a_held_job_is_running_and_a_dead_run_stopped() -> None:
    assert {shown_state(state, held=True) for state in MEANINGS} == {RUNNING}
    assert shown_state(RUNNING, held=False) == STOPPED
    for state in set(MEANINGS) - {RUNNING}:
        assert shown_state(state, held=False) == state

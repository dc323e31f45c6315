"""`writable.check_distinct`, the one check of every file a run writes, and the Python API
through it: `validate(..., report=...)`, `output=` whose partial twin is the input, a caller's
`side_files`, `report(...)`; each refused before any request, nothing written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers import FAST_RETRY, KEY, FakeInThread, lead_rows, write_leads

import ample_batch
from ample_batch import ApiOptions, ValidateOptions
from ample_batch.errors import PathRefused
from ample_batch.pipeline.html_report import report
from ample_batch.pipeline.prepare import check_side_files
from ample_batch.pipeline.writable import Written, check_distinct


def _state(root: Path) -> Path:
    """A state dir holding what a run leaves: the database, a ledger, a lock, a simulation."""
    state = root / "state"
    for name in ("ample-batch.sqlite", "ledger-ab12.sqlite", "simulated/ample-batch.sqlite"):
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_bytes(b"SQLite format 3\x00")
    (state / "locks").mkdir()
    (state / "locks" / "j.lock").write_text("")
    return state


def test_every_file_must_differ_from_the_input_and_from_the_earlier_ones(tmp_path: Path) -> None:
    src = tmp_path / "leads.csv"
    src.write_text("email\n")
    os.link(src, tmp_path / "hard.csv")
    os.symlink(src, tmp_path / "soft.csv")
    out = Written(tmp_path / "out.csv", "-o")
    check_distinct([out, Written(tmp_path / "s.json", "--summary-json")], input=src)
    for alias in (
        tmp_path / "hard.csv",
        tmp_path / "soft.csv",
        tmp_path / "x" / ".." / "leads.csv",
    ):
        with pytest.raises(PathRefused, match=f"is the input file {src};") as caught:
            check_distinct([out, Written(alias, "--summary-json")], input=src)
        assert caught.value.path == alias  # the later file is the one refused
    with pytest.raises(PathRefused, match=r"^--report .*/out\.csv: is also -o .*/out\.csv;"):
        check_distinct([out, Written(tmp_path / "out.csv", "--report")], input=src)
    # `first`: only the later files are judged (a caller's side files, before the input is read)
    check_distinct([Written(src, "-o"), Written(tmp_path / "s.json", "--summary-json")],
                   input=src, first=1)  # fmt: skip


def test_nothing_goes_over_the_states_own_files_by_any_name(tmp_path: Path) -> None:
    state = _state(tmp_path)
    src = tmp_path / "leads.csv"
    src.write_text("email\n")
    os.link(state / "ample-batch.sqlite", tmp_path / "linked.sqlite")
    own = f"is one of the state's own files, in the state dir {re.escape(str(state))}; choose"
    for inside in ("ample-batch.sqlite", "simulated/ample-batch.sqlite", "locks/x"):
        with pytest.raises(PathRefused, match=own):
            check_distinct([Written(state / inside, "--summary-json")], input=src, state_dir=state)
    with pytest.raises(PathRefused, match=r"is the same file as .*/state/ample-batch\.sqlite, in"):
        check_distinct([Written(tmp_path / "linked.sqlite", "-o")], input=src, state_dir=state)
    os.symlink(state, tmp_path / "via")  # the state dir under another name is the same dir
    with pytest.raises(PathRefused, match="is one of the state's own files"):
        check_distinct(
            [Written(tmp_path / "via" / "locks" / "r.html", "--report")], state_dir=state
        )
    # Anything else may go in the state dir: a cron job's summary beside its state, say.
    check_distinct([Written(state / "new.json", "--summary-json")], input=src, state_dir=state)
    check_distinct([Written(tmp_path / "via" / "r.html", "--report")], state_dir=state)
    check_distinct([Written(state / "x.json", "-o")], input=src, state_dir=None)  # PostgreSQL


def test_beside_an_input_kept_in_the_state_dir_only_the_states_own_files_are_refused(
    tmp_path: Path,
) -> None:
    """A frame's run keeps its input and output in `frames/` under the state dir, and
    `--state-dir .` keeps the state beside the lead list: neither may be refused."""
    state = _state(tmp_path)
    frame = state / "simulated" / "frames" / "frame-1.parquet"
    frame.parent.mkdir()
    frame.write_bytes(b"PAR1")
    check_distinct([Written(frame.with_name("frame-1.validated.parquet"), "-o")],
                   input=frame, state_dir=state)  # fmt: skip
    for own in ("ample-batch.sqlite", "ample-batch.sqlite-wal", "simulated/ledger-9.sqlite",
                "locks/j.lock"):  # fmt: skip
        with pytest.raises(PathRefused, match="is one of the state's own files"):
            check_distinct([Written(state / own, "--summary-json")], input=frame, state_dir=state)


def test_validate_refuses_a_report_among_the_states_files_before_any_request(
    tmp_path: Path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(retry_after=0.1) as fake:
        with pytest.raises(PathRefused, match=r"^report=.*/s/locks/r\.html: is one of the state"):
            ample_batch.validate(
                src, report=tmp_path / "s" / "locks" / "r.html", state_dir=tmp_path / "s",
                api_key=KEY, base_url=fake.url,
            )  # fmt: skip
        assert fake.summary().requests == 0
    assert not (tmp_path / "s").exists() and not (tmp_path / "leads.validated.csv").exists()


def test_validate_refuses_an_output_whose_partial_twin_is_the_input(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.partial.csv", lead_rows(20))
    before = src.read_bytes()
    with FakeInThread(retry_after=0.1) as fake:
        with pytest.raises(PathRefused, match=r"^the partial output .*: is the input file"):
            ample_batch.validate(
                src, output=tmp_path / "leads.csv", state_dir=tmp_path / "s",
                api_key=KEY, base_url=fake.url,
            )  # fmt: skip
        assert fake.summary().requests == 0
    assert src.read_bytes() == before


def test_a_callers_side_file_is_checked_with_the_runs_own(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(retry_after=0.1) as fake:
        api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
        log = tmp_path / "leads.validated.no_email.csv"
        options = ValidateOptions(input=src, state_dir=tmp_path / "s", api=api, split=True,
                                  side_files=(("--log", log),))  # fmt: skip
        with pytest.raises(PathRefused, match=r"^--log .*: is also --split's no_email file"):
            check_side_files(options)
        # In Python words from the Python API (pipeline/wording.py); --log is the caller's.
        with pytest.raises(PathRefused, match=r"^--log .*: is also split=True's no_email file"):
            ample_batch.validate(options)
        assert fake.summary().requests == 0
        fine = ValidateOptions(input=src, state_dir=tmp_path / "s", api=api,
                               side_files=(("--log", tmp_path / "run.log"),))  # fmt: skip
        check_side_files(fine)
        assert ample_batch.validate(fine).complete
    assert not (tmp_path / "run.log").exists(), "the library never writes a caller's side file"


def test_report_names_its_output_and_keeps_out_of_the_state_dir(tmp_path: Path) -> None:
    state = _state(tmp_path)
    with pytest.raises(PathRefused, match=r"^output r\.txt: give a file name ending in \.html$"):
        report(state, Path("r.txt"))
    with pytest.raises(PathRefused, match=r"^-o .*/r\.html: is one of the state's own files"):
        report(state, state / "simulated" / "locks" / "r.html", option="-o")
    assert not (state / "simulated" / "locks" / "r.html").exists()

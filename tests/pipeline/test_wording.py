"""The Python API's messages name keywords and calls, not the CLI's options and commands."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import ample_batch
from ample_batch import InputError, Stopped
from ample_batch.pipeline.wording import in_python_words, python_words


@pytest.mark.parametrize(
    ("cli", "python"),
    [
        (
            "no API key: set AMPLEMARKET_API_KEY or pass --api-key (or try --simulate)",
            "no API key: set AMPLEMARKET_API_KEY or pass api_key= (or try simulate=True)",
        ),
        # A value the message shows joins its keyword; the prose after a bare mention stays.
        ("--chunk-size 200,000 is above", "chunk_size=200,000 is above"),
        (
            "check --usage-limit and --chunk-size against",
            "check usage_limit= and chunk_size= against",
        ),
        ("bad --base-url 'ftp://x': use https", "bad base_url='ftp://x': use https"),
        ("--report leads.csv: give a name", "report=leads.csv: give a name"),
        ("(e.g. --encoding cp1252) with", "(e.g. encoding=cp1252) with"),
        ("choose one with --sheet NAME or", "choose one with sheet=NAME or"),
        (
            "pass another --state-dir (or AMPLE_BATCH_HOME)",
            "pass another state_dir= (or AMPLE_BATCH_HOME)",
        ),
        (
            "--state-schema abc: at most 5 with --simulate, which",
            "state_schema=abc: at most 5 with simulate=True, which",
        ),
        ("--split would overwrite", "split=True would overwrite"),
        ("--email-column=Email", "email_column=Email"),
        ("--sent-column: the name is blank", "sent_column: the name is blank"),
        # Commands become calls; what has no keyword or function is left as it was.
        ("see `ample-batch status`", "see `ample_batch.status()`"),
        ("stop it with `ample-batch cancel 3f9a`", "stop it with `ample_batch.cancel('3f9a')`"),
        (
            "--summary-json and `ample-batch mock-server`",
            "--summary-json and `ample-batch mock-server`",
        ),
        ("/data/--state-dir/x and a--simulate", "/data/--state-dir/x and a--simulate"),
    ],
)
def test_cli_words_become_python_words(cli: str, python: str) -> None:
    assert in_python_words(cli) == python
    assert in_python_words(python) == python  # once is enough: a second pass changes nothing


def test_the_error_keeps_its_type_attributes_and_summary() -> None:
    summary = SimpleNamespace(
        warnings=["--split: the split files are written once the job completes"]
    )
    with pytest.raises(Stopped) as raised, python_words():
        stopped = Stopped("stopped at --max-runtime; run again to resume")
        stopped.summary = summary  # type: ignore[attr-defined]
        raise stopped
    assert str(raised.value) == "stopped at max_runtime; run again to resume"
    assert raised.value.summary is summary  # type: ignore[attr-defined]
    assert summary.warnings == ["split=True: the split files are written once the job completes"]
    with pytest.raises(InputError, match=r"^bad --x$"), python_words():
        raise InputError("bad --x")
    with pytest.raises(ValueError, match="--api-key"), python_words():
        raise ValueError("--api-key")  # not ours: left alone


def test_paths_are_never_reworded_and_the_short_output_option_is_named_too(
    tmp_path: Path,
) -> None:
    src = tmp_path / "a --split.csv"  # a file name may hold what looks like an option
    src.write_text("email\na@b.com\n")
    with pytest.raises(InputError) as same:
        ample_batch.validate(src, simulate=True, state_dir=tmp_path / "s", output=src)
    assert str(same.value) == f"{src}: is the input file; choose another output="
    with pytest.raises(InputError) as named:
        ample_batch.validate(
            src, simulate=True, state_dir=tmp_path / "s", output=tmp_path / "o.csv",
            report=tmp_path / "r --sheet x.txt",
        )  # fmt: skip
    assert str(named.value).startswith(f"report={tmp_path / 'r --sheet x.txt'}: give a file name")

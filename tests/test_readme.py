"""The README's code blocks are run or parsed here, so they cannot go stale.

Every ```python block runs as its own script in a temp dir holding the sample data; every
`ample-batch ...` command line in a ```sh or ```cron block is parsed by the real click
command (unknown subcommands and options, bad values and missing arguments all fail), and the
safe ones run for real with --simulate.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ample_batch.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(*languages: str) -> list[str]:
    pattern = rf"^```(?:{'|'.join(languages)})\n(.*?)^```"
    return re.findall(pattern, README, re.S | re.M)


def _command_lines() -> list[list[str]]:
    """Each `ample-batch ...` invocation in the shell-like blocks, as its argument list (after
    the program name), with continuations joined and env assignments, comments and the shell
    operators around it dropped. `pip install ample-batch` is not one: only a word in command
    position counts."""
    operators = {"&&", "||", "|", ";", "&"}
    commands = []
    for block in _blocks("sh", "cron"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.commenters = "#"
            lexer.whitespace_split = True
            at_start, current = True, None
            for token in lexer:
                if token in operators:
                    at_start, current = True, None
                elif current is not None:
                    current.append(token)
                elif at_start and token == "ample-batch":
                    current = []
                    commands.append(current)
                elif not (at_start and re.match(r"^[A-Za-z_]\w*=", token)):
                    at_start = False
    return commands


def _sample_dir(tmp_path: Path) -> Path:
    for item in (ROOT / "sample_data").iterdir():
        if item.is_file():
            shutil.copy(item, tmp_path / item.name)
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    return tmp_path


def test_readme_starts_with_pip_install_and_keeps_make_for_contributors() -> None:
    opening = README[: README.index("## Usage")]
    first_block = _blocks("sh")[0]
    assert first_block.lstrip().startswith("pip install ample-batch")
    assert "pip install ." in first_block
    assert "ample-batch validate leads.csv --simulate" in first_block
    assert "AMPLEMARKET_API_KEY=... ample-batch validate leads.csv" in first_block
    assert "make demo" in opening and "make test" in opening
    assert opening.index("pip install") < opening.index("make demo")


PYTHON_BLOCKS = _blocks("python")


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("number", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs_on_its_own(number: int, tmp_path: Path) -> None:
    work = _sample_dir(tmp_path)
    script = work / "example.py"
    script.write_text(PYTHON_BLOCKS[number])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLE")}
    env["PYTHONPATH"] = str(ROOT)
    env["AMPLE_BATCH_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, script.name], cwd=work, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


COMMANDS = list({tuple(a): a for a in _command_lines()}.values())


def test_readme_shows_commands() -> None:
    names = {args[0] for args in COMMANDS if args}
    assert {"validate", "estimate", "status", "cancel", "mock-server"} <= names


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_readme_command_parses(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMPLE_BATCH_HOME", str(tmp_path))
    # make_context parses and converts every option without running the command.
    parent = click.Context(main, info_name="ample-batch")
    command = main.get_command(parent, args[0])
    assert command is not None, f"the README shows `ample-batch {args[0]}`, which does not exist"
    try:
        command.make_context(args[0], list(args[1:]), parent=parent)
    except click.ClickException as exc:
        pytest.fail(f"`ample-batch {shlex.join(args)}`: {exc.format_message()}")


SIMULATED = [a for a in COMMANDS if a[:1] == ["validate"] and "--simulate" in a]


@pytest.mark.parametrize("args", SIMULATED, ids=[" ".join(a) for a in SIMULATED])
def test_readme_simulated_command_runs(args: list[str], tmp_path: Path) -> None:
    work = _sample_dir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLE")}
    env.update(PYTHONPATH=str(ROOT), AMPLE_BATCH_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, "-m", "ample_batch", *args, "-q"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (work / "leads.validated.csv").exists()


def _exit_code_table() -> dict[int, str]:
    section = README.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.M)}


def test_readme_exit_codes_are_the_contract_in_errors() -> None:
    import ample_batch.errors as errors

    table = _exit_code_table()
    assert sorted(table) == sorted(errors.EXIT_CODES)
    for code, meaning in errors.EXIT_CODES.items():
        assert table[code].startswith(meaning.split(":")[0]), (code, table[code])
    raised = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AmpleBatchError)
    }
    assert raised <= set(table)

"""The package as pip installs it: every import declared, `--version`, the check-dist script.

The full proof (a wheel in a fresh venv without extras) is `make check-dist`, run by CI; these
tests keep the cheap half of it in the suite.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from ample_batch.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].strip().lower().replace("_", "-")
        for dep in project["dependencies"]
    }


def _module_level_imports() -> dict[str, set[str]]:
    """Top-level third-party names imported at module level, with the files importing them.
    Imports inside functions are lazy and may be optional; module-level ones never are."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "ample_batch").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "ample_batch":
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_module_level_import_is_a_declared_dependency() -> None:
    # `pip install .` without extras crashed on numpy: only the bench extra's pandas brought it.
    declared = _declared()
    owners = md.packages_distributions()
    missing = {
        top: sorted(files)
        for top, files in _module_level_imports().items()
        if not {d.lower().replace("_", "-") for d in owners.get(top, [top])} & declared
    }
    assert missing == {}


def test_distributions_imported_directly_are_declared_not_borrowed() -> None:
    # aiohttp brings yarl and multidict, but we import them ourselves: their API is ours to pin.
    assert {"numpy", "yarl", "multidict"} <= _declared()


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ample-batch, version {md.version('ample-batch')}"


def test_version_from_python_dash_m_names_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ample_batch", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("ample-batch, version ")


def test_ci_runs_check_dist_after_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("make check-dist")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^check-dist:", makefile, re.M)
    assert (ROOT / ".ci" / "check_dist.py").exists()

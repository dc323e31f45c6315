"""`make check-dist`: the package as a user gets it, not as the development venv has it.

Builds the wheel from the checkout's package files only, installs it into a brand-new venv
WITHOUT extras (dependencies from PyPI), and runs from an unrelated directory:
`ample-batch --version`, a `--simulate` run of sample_data/leads.csv, `mock-server --help`,
an import of every module, and each ```python block of README.md. Any failure prints the
command and its output and exits 1; the temp dir is kept for a look.

    python .ci/check_dist.py            # what the Makefile target runs
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


class CheckFailed(Exception):
    pass


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Run one step; its stdout, or CheckFailed with everything it printed."""
    shown = " ".join(str(a) for a in args)
    print(f"check-dist: $ {shown}", flush=True)
    try:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{shown}: no answer after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise CheckFailed(
            f"{shown}: exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    return done.stdout


def clean_env(tmp: Path) -> dict[str, str]:
    """No development paths, no real key, no state outside the temp dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("AMPLE")
    }
    env["AMPLE_BATCH_HOME"] = str(tmp / "home-state")
    env["HOME"] = str(tmp / "home")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # The user's pip cache saves downloading pyarrow and polars again on every run.
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return env


def fresh_dir(tmp: Path, name: str) -> Path:
    """A working directory holding a copy of sample_data/ and its files at the top too, so
    README examples that say `leads.csv` find it."""
    work = tmp / name
    shutil.copytree(ROOT / "sample_data", work / "sample_data")
    for item in (ROOT / "sample_data").iterdir():
        if item.is_file() and not item.name.endswith(".md"):
            shutil.copy(item, work / item.name)
    return work


def check(tmp: Path) -> None:
    env = clean_env(tmp)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    # Build from the package files alone, so nothing else of the checkout can leak in.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "ample_batch", src / "ample_batch", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, src],
        cwd=tmp,
        env=env,
    )
    wheels = sorted(dist.glob("ample_batch-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel in {dist}, found {[w.name for w in wheels]}")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp, env=env)
    py, tool = venv / "bin" / "python", venv / "bin" / "ample-batch"
    run([py, "-m", "pip", "install", "--quiet", wheels[0]], cwd=tmp, env=env)
    run([py, "-m", "pip", "check"], cwd=tmp, env=env)

    work = fresh_dir(tmp, "work")
    where = run([py, "-c", "import ample_batch; print(ample_batch.__file__)"], cwd=work, env=env)
    if not where.strip().startswith(str(venv)):
        raise CheckFailed(f"ample_batch imported from {where.strip()}, not from the new venv")
    # Every module, the fake API included: an undeclared import anywhere fails here
    # (__main__ left out: importing it runs the command).
    run(
        [
            py,
            "-c",
            "import importlib, pkgutil, ample_batch\n"
            "for m in pkgutil.walk_packages(ample_batch.__path__, 'ample_batch.'):\n"
            "    if m.name != 'ample_batch.__main__':\n"
            "        importlib.import_module(m.name)",
        ],
        cwd=work,
        env=env,
    )

    shown = run([tool, "--version"], cwd=work, env=env).strip()
    if shown != f"ample-batch, version {version}":
        raise CheckFailed(f"ample-batch --version printed {shown!r}, expected version {version}")

    out, state, summary = tmp / "out" / "leads.validated.csv", tmp / "state", tmp / "s.json"
    out.parent.mkdir()
    run(
        [
            tool,
            "validate",
            "sample_data/leads.csv",
            "--simulate",
            "--state-dir",
            state,
            "-o",
            out,
            "--summary-json",
            summary,
            "-q",
        ],
        cwd=work,
        env=env,
    )
    with open(ROOT / "sample_data" / "leads.csv", newline="", encoding="utf-8-sig") as f:
        rows_in = sum(1 for _ in csv.DictReader(f))
    with open(out, newline="", encoding="utf-8-sig") as f:
        rows_out = list(csv.DictReader(f))
    if len(rows_out) != rows_in or "pending" in {r["email_result"] for r in rows_out}:
        raise CheckFailed(f"{out}: {len(rows_out)} rows for {rows_in}, or some still pending")
    if not summary.exists():
        raise CheckFailed(f"--summary-json {summary} was not written")

    if "--port" not in run([tool, "mock-server", "--help"], cwd=work, env=env):
        raise CheckFailed("ample-batch mock-server --help does not document --port")

    # Without the `postgres` extra a --state-url is a one-line exit 2 naming the extra.
    url = "postgresql://ample:s3cret@127.0.0.1:9/leads"
    print(f"check-dist: $ {tool} status --state-url {url.replace('s3cret', '***')}", flush=True)
    done = subprocess.run(
        [str(tool), "status", "--state-url", url], cwd=work, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    if done.returncode != 2 or "ample-batch[postgres]" not in said or "s3cret" in said:
        raise CheckFailed(f"status --state-url without the extra: exit {done.returncode}\n{said}")

    blocks = PYTHON_BLOCK.findall((ROOT / "README.md").read_text())
    if not blocks:
        raise CheckFailed("README.md has no ```python block to run")
    if any("import pandas" in block for block in blocks):
        # The Notebooks examples pass pandas frames; pandas is the user's, not a dependency.
        run([py, "-m", "pip", "install", "--quiet", "pandas"], cwd=tmp, env=env)
    for number, block in enumerate(blocks, 1):
        here = fresh_dir(tmp, f"readme-{number}")
        script = here / f"readme_example_{number}.py"
        script.write_text(block)
        run([py, script.name], cwd=here, env=env, timeout=600)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ample-batch-check-dist-"))
    try:
        check(tmp)
    except CheckFailed as exc:
        print(f"check-dist: FAILED: {exc}", file=sys.stderr)
        print(f"check-dist: kept {tmp} for a look", file=sys.stderr)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("check-dist: ok: the wheel installs without extras and its commands and README run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

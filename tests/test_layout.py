"""The package's shape is a contract: stage packages do not import each other (except jobs/
using api/ and quota/), cli/ calls only the wiring, and no module imports itself in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "ample_batch"
ALLOWED = {
    "files": set(),
    "api": set(),
    "quota": set(),
    "jobs": {"api", "quota"},
    "cli": {"pipeline", "fake"},
}
"""What each stage package may import besides itself and the top-level modules."""


def _module(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if package else parts), package


def _imports(path: Path) -> set[str]:
    """The modules of ours `path` imports at run time (TYPE_CHECKING blocks left out)."""
    name, package = _module(path)
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for top in tree.body
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
        for node in ast.walk(top)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = name.split(".") if package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            candidate = f"{target}.{alias.name}"
            as_path = ROOT / candidate.replace(".", "/")
            found.add(
                candidate if as_path.with_suffix(".py").exists() or as_path.is_dir() else target
            )
    return found


GRAPH = {_module(p)[0]: _imports(p) for p in PACKAGE.rglob("*.py")}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return (
        parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None
    )


def test_stage_packages_import_only_what_they_may() -> None:
    wrong = []
    for module, imported in GRAPH.items():
        stage = _stage(module)
        if stage not in ALLOWED:
            continue
        for target in imported:
            other = _stage(target)
            if other is not None and other != stage and other not in ALLOWED[stage]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    cycles = []

    def visit(module: str, path: list[str], done: set[str]) -> None:
        for target in GRAPH.get(module, ()):
            if target in path:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in done:
                done.add(target)
                visit(target, [*path, target], done)

    done: set[str] = set()
    for module in sorted(GRAPH):
        if module not in done:
            done.add(module)
            visit(module, [module], done)
    assert cycles == []


def test_the_graph_sees_imports() -> None:
    # Guards the two tests above against a parser that finds nothing.
    assert "ample_batch.jobs.protocol" in GRAPH["ample_batch.jobs.engine"]
    assert _stage("ample_batch.files.join") == "files"

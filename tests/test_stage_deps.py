"""dvc.yaml's code dependencies are each stage's import closure, and the code has no import cycles.

The closure is computed from the source (every ``import`` statement inside ``gans/`` and ``pipeline/``,
those inside functions included, plus the ``__init__.py`` of every package on the way), starting from the
module a stage's ``cmd`` runs. A file in the closure that the stage's deps do not cover would leave its
outputs stale when that file changes; a listed file outside it reruns the stage for nothing.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gans", "pipeline")


def module_file(module: str) -> Path | None:
    """The repo file of a dotted module name inside our packages (a package's ``__init__.py``), or None."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imported_files(path: Path) -> frozenset[Path]:
    """Files of our packages that ``path`` imports by name (module level or inside functions)."""
    found: set[Path] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from a import b` imports the submodule a.b when there is one, else a name defined in a.
            targets = [f"{base}.{alias.name}" if module_file(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        found.update(file for file in map(module_file, targets) if file is not None and file != path)
    return frozenset(found)


def package_inits(path: Path) -> set[Path]:
    """The ``__init__.py`` files Python runs before ``path``'s module (its enclosing packages)."""
    inits, directory = set(), path.parent
    while directory != REPO:
        inits.add(directory / "__init__.py")
        directory = directory.parent
    return {init for init in inits if init.is_file()}


def import_closure(entry: Path) -> set[Path]:
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_files(path) | package_inits(path))
    return seen


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_entry(stage: dict) -> Path:
    match = re.fullmatch(r"python -m ([\w.]+)", stage["cmd"].strip())
    assert match, f"cmd {stage['cmd']!r} is not `python -m <module>`"
    entry = module_file(match.group(1))
    assert entry is not None, f"cmd {stage['cmd']!r} runs no module of {PACKAGES}"
    return entry


def code_deps(stage: dict) -> list[Path]:
    """The deps that are our source: files or folders under gans/ or pipeline/."""
    deps = [REPO / dep for dep in stage.get("deps", []) if "$" not in dep]
    return [dep for dep in deps if dep.relative_to(REPO).parts[0] in PACKAGES]


def uncovered(closure: set[Path], deps: list[Path]) -> list[str]:
    return sorted(str(f.relative_to(REPO)) for f in closure if not any(f == d or d in f.parents for d in deps))


def unused(closure: set[Path], deps: list[Path]) -> list[str]:
    return sorted(str(d.relative_to(REPO)) for d in deps if not any(f == d or d in f.parents for f in closure))


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_depends_on_exactly_its_import_closure(name):
    stage = stages()[name]
    closure, deps = import_closure(stage_entry(stage)), code_deps(stage)
    missing = uncovered(closure, deps)
    assert not missing, f"stage {name!r} runs {', '.join(missing)} but dvc.yaml does not list it in deps"
    extra = unused(closure, deps)
    assert not extra, f"stage {name!r} lists {', '.join(extra)} in deps but never imports it"


def test_the_closure_check_catches_a_removed_dep():
    """The check above can fail: dropping one dep of `evaluate` is reported by stage and file."""
    stage = stages()["evaluate"]
    closure = import_closure(stage_entry(stage))
    deps = [dep for dep in code_deps(stage) if dep != REPO / "gans/data.py"]
    assert uncovered(closure, deps) == ["gans/data.py"]


def test_training_code_does_not_reach_data_preparation():
    """Editing the face detection or the streamed writer must not retrain the model."""
    closure = import_closure(stage_entry(stages()["train"]))
    assert not [f for f in closure if REPO / "gans" / "prepare" in f.parents]


def _cycles() -> list[list[str]]:
    """Import cycles among our modules (explicit import statements; a package's own init is not an edge)."""
    files = sorted(f for package in PACKAGES for f in (REPO / package).rglob("*.py"))
    graph = {f: sorted(imported_files(f)) for f in files}
    cycles, state = [], {}

    def visit(node: Path, stack: list[Path]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                cycles.append([str(p.relative_to(REPO)) for p in cycle])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for file in files:
        if file not in state:
            visit(file, [file])
    return cycles


def test_no_import_cycles_inside_gans_or_pipeline():
    assert _cycles() == []

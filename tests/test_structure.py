"""The package's import graph follows the data flow of DESIGN.md: every module sits in a layer, imports
point only to its own layer or lower ones, and no two modules import each other (directly or round a
loop). Imports under ``if TYPE_CHECKING:`` are for annotations only and are not followed.

Run it alone with ``pytest tests/test_structure.py``; it reads the source, it imports nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rewardlab"

#: Lowest first. A module may import from its own layer and those before it.
LAYERS: list[tuple[str, ...]] = [
    ("rewardlab", "rewardlab.errors", "rewardlab.types", "rewardlab.resources", "rewardlab.runtime",
     "rewardlab.arrays", "rewardlab.extras", "rewardlab.registry"),
    ("rewardlab.config", "rewardlab.paths", "rewardlab.stats", "rewardlab.store"),
    ("rewardlab.sims.registry", "rewardlab.shaping.registry"),
    ("rewardlab.cards", "rewardlab.aliases"),
    ("rewardlab.household*",),
    ("rewardlab.sims*",),
    ("rewardlab.randomization",),  # physics perturbations of a card's env, used by the trainers
    ("rewardlab.state",),
    ("rewardlab.sandbox",),
    ("rewardlab.program",),
    ("rewardlab.trial",),
    ("rewardlab.sources",),
    ("rewardlab.wrappers", "rewardlab.rollouts", "rewardlab.checks"),
    ("rewardlab.sims.maniskill_facts",),  # a measuring script: scores rollouts with reference programs
    ("rewardlab.shaping*",),
    ("rewardlab.moe*",),
    ("rewardlab.training*",),
    ("rewardlab.llm*",),
    ("rewardlab.text2reward*",),
    ("rewardlab.e2cl*",),
    ("rewardlab.runs*",),
    ("rewardlab.e2cl.report",),  # reads the run store through runs.report's run lookup
    ("rewardlab.export",),  # a trained trial (store, training's models) out to ONNX; play without torch
    ("rewardlab.robustness",),  # an exported policy under perturbed physics; ranges from the providers
    ("rewardlab.review*",),  # the review web page: reads the store, writes through text2reward's refine
    ("rewardlab.cli*", "rewardlab.__main__"),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None  # (specificity, layer): an exact name beats a wildcard
    for i, layer in enumerate(LAYERS):
        for pattern in layer:
            if pattern.endswith("*"):
                stem = pattern[:-1]
                if module == stem or module.startswith(stem + "."):
                    best = max(best or (0, i), (1, i))
            elif module == pattern:
                best = (2, i)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_structure.py: add it where it belongs")
    return best[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its body (functions too), except under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            candidates = []
        for name in candidates:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    for module in graph:
        _layer(module)


def test_imports_point_down_the_data_flow(graph: dict[str, set[str]]) -> None:
    upward = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if module.startswith(dep + ".") or dep == "rewardlab":  # a package's own __init__ runs first anyway
                continue
            if _layer(dep) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})")
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    # a package importing its own submodules (re-exports) is not a cycle; drop those edges
    edges = {m: {d for d in deps if not d.startswith(m + ".") and not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                dfs(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            dfs(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a store that imported the runner would be reported."""
    fake = tmp_path / "store.py"
    fake.write_text("from rewardlab.runs.runner import run_experiment\n")
    deps = _imports("rewardlab.store", fake, set(_modules()))
    assert deps == {"rewardlab.runs.runner"}
    assert _layer("rewardlab.runs.runner") > _layer("rewardlab.store")


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        ("rewardlab.llm.log", ("rewardlab.runs.runner", "rewardlab.runs.report", "matplotlib", "scipy", "torch")),
        ("rewardlab.runs.spec", ("rewardlab.runs.runner", "matplotlib", "ray")),
        ("rewardlab.store", ("rewardlab.cards", "gymnasium", "torch", "scipy")),
        ("rewardlab.cards", ("rewardlab.sims.base", "gymnasium", "torch")),
    ],
)
def test_light_modules_import_light(module: str, must_not_load: tuple[str, ...]) -> None:
    """Importing the exchange log must not load the runner, plots and scipy (``runs`` imports lazily)."""
    code = f"import sys, {module}; print(' '.join(m for m in {must_not_load!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing {module} loaded {done.stdout.strip()}"

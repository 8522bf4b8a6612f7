"""The package layout holds: imports point one way along the data flow, no cycles, a light `import kanlab`.

Data flows study -> tasks + models -> training -> runs -> report. A package may import only packages
of a lower rank (RANKS); a study composes the configs of tasks, models, training and the symbolic
workflow, so it ranks above them although it comes first in the flow (docs/architecture.md).
Every import counts: at module level, inside functions and under TYPE_CHECKING alike.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from kanlab._lazy import declared

SRC = Path(__file__).resolve().parents[1] / "src"

# A room (a package, or a module at the top) may import itself and rooms of a lower rank; rooms
# of equal rank do not import each other. A new room fails test_every_room_has_a_rank until ranked.
RANKS = {
    "splines": 0, "presets": 0, "_lazy": 0, "_moved": 0,  # _moved names old paths only as strings
    "layers": 1,
    "models": 2, "tasks": 2,
    "training": 3,
    "symbolic": 4,
    "study": 5,
    "runs": 6,
    "report": 7,
    "plot": 8,  # kanlab.plot: the report's pictures of a live model, for notebooks
    "cli": 8,  # with _command.py, the console script's entry point (ROOMS)
    "__init__": 9,  # kanlab's own: re-exports the public API
}
# modules at the top that belong to another room
ROOMS = {"_command": "cli", "_cli_parser": "cli", "__main__": "cli"}
# Cycles allowed, each with its reason; any other cycle fails.
ALLOWED_CYCLES = {
    ("kanlab._command", "kanlab.cli"): "the entry point installs its Ctrl-C handler before it imports the "
                                       "CLI (inside main), and the CLI keeps using that handler",
}
PACKAGES = ("kanlab.models", "kanlab.training", "kanlab.symbolic", "kanlab.study", "kanlab.runs")
C_LOADER = ("kanlab.layers.kan._native", "kanlab.layers.kan.native_build")
HEAVY = ("torch", *C_LOADER, "matplotlib", "sympy", "dask", "distributed", "ray")
KERNELS = (*C_LOADER, "kanlab.training.loop", "kanlab.symbolic.workflow", "matplotlib")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "kanlab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, source: str, known: set[str]) -> set[str]:
    """The kanlab modules `name` imports (a module imported from a package counts as itself)."""
    package = name if name in {m.rpartition(".")[0] for m in known} else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "kanlab")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.split(".")[0] == "kanlab":
                out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return out - {name}


def room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else ROOMS.get(parts[1], parts[1])


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path.read_text(), set(known)) for name, path in known.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a room of equal or higher rank than the importer's."""
    return sorted(f"{a} imports {b} ({room(a)} ranks {RANKS.get(room(a))}, {room(b)} {RANKS.get(room(b))})"
                  for a, targets in edges.items() for b in targets
                  if room(a) != room(b) and RANKS.get(room(b), 99) >= RANKS.get(room(a), -1))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_room_has_a_rank() -> None:
    rooms = {room(m) for m in modules()}
    assert rooms <= set(RANKS), f"rank {sorted(rooms - set(RANKS))} in RANKS and docs/architecture.md"


def test_imports_point_down_the_flow() -> None:
    assert upward(graph()) == []


def test_no_import_cycles() -> None:
    assert [c for c in cycles(graph()) if tuple(c) not in ALLOWED_CYCLES] == []


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    known = {"kanlab.runs.a", "kanlab.report.b", "kanlab.training.c", "kanlab.study.d"}
    lazy_upward = "def f():\n    from kanlab.report import b\n"  # inside a function still counts
    edges = {"kanlab.runs.a": imports("kanlab.runs.a", lazy_upward, known),
             "kanlab.training.c": imports("kanlab.training.c", "from kanlab.study.d import x\n", known),
             "kanlab.study.d": imports("kanlab.study.d", "from kanlab.training import c\n", known)}
    assert edges["kanlab.runs.a"] == {"kanlab.report.b"}
    assert [line.split(" (")[0] for line in upward(edges)] == [
        "kanlab.runs.a imports kanlab.report.b", "kanlab.training.c imports kanlab.study.d"]
    assert cycles(edges) == [["kanlab.study.d", "kanlab.training.c"]]
    assert upward({"kanlab.report.b": {"kanlab.runs.a"}}) == [] and cycles({"a": {"b"}, "b": set()}) == []


def test_import_kanlab_and_its_packages_load_nothing_heavy_and_configs_no_kernels() -> None:
    light = "; ".join(f"import {m}" for m in ("kanlab", "kanlab.cli", *PACKAGES))
    loaded = "print(' '.join(m for m in {!r} if m in sys.modules))"
    configs = "import kanlab.study.config, kanlab.training.config, kanlab.symbolic.config"
    code = f"import sys; {light}; {loaded.format(HEAVY)}; {configs}; {loaded.format(KERNELS)}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["", ""]  # nothing heavy; a study's configs load no kernels or loop


@pytest.mark.parametrize("package", ["kanlab", *PACKAGES])
def test_each_public_name_of_a_package_is_its_modules_object(package: str) -> None:
    pkg = importlib.import_module(package)
    homes = declared(pkg.__file__)
    assert set(pkg.__all__) <= set(homes) and pkg.__all__
    for name in pkg.__all__:
        home = importlib.import_module(homes[name])
        expected = importlib.import_module(f"{package}.{name}") if home is pkg else getattr(home, name)
        assert getattr(pkg, name) is expected, name


def test_an_old_module_path_still_imports_with_a_warning_naming_the_new_one() -> None:
    from kanlab.training import loop

    sys.modules.pop("kanlab.train", None)
    try:
        with pytest.warns(FutureWarning, match="kanlab.train moved to kanlab.training.loop"):
            from kanlab.train import TrainConfig, train
        assert train is loop.train and TrainConfig is loop.TrainConfig
    finally:
        sys.modules.pop("kanlab.train", None)

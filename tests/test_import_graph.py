"""The package graph is one-way: no cycle between packages, no library module importing a CLI module.

Every import counts, wherever it sits (module top, inside a function, under ``TYPE_CHECKING``): each is a real
dependency of the importing package. A node is a top-level package's direct subpackage or module
(``archsim.mapping``, ``archsim.result``, ``quantizer.core``); imports inside one node are its own business.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import ROOT

ROOTS = ("archsim", "quantizer")
CLI_MODULES = frozenset({"archsim.cli", "archsim.entry", "archsim.__main__", "quantizer.cli", "quantizer.entry",
                         "quantizer.__main__"})


def _modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports (``from pkg import module`` resolves to the module)."""
    found: set[str] = set()
    package = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m.split(".")[0] in ROOTS}


def _node(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph() -> dict[str, set[str]]:
    """Node -> the nodes it imports (itself excluded)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        src = _node(name)
        deps = graph.setdefault(src, set())
        for m in _imports(name, path):
            if _node(m) != src:
                deps.add(_node(m))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_cycle_between_packages() -> None:
    graph = package_graph()
    graph.pop("archsim", None)  # the package facade (archsim/__init__.py) re-exports the API; nothing imports it
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_imports_the_facade() -> None:
    importers = [name for name, path in MODULES.items() if "archsim" in {m for m in _imports(name, path)}
                 and name != "archsim"]
    assert importers == []


def test_library_code_imports_no_cli_module() -> None:
    offenders = [(name, m) for name, path in MODULES.items() if name not in CLI_MODULES
                 for m in _imports(name, path) if m in CLI_MODULES]
    assert offenders == []


def test_quantizer_stands_alone() -> None:
    offenders = [(name, m) for name, path in MODULES.items() if name.startswith("quantizer")
                 for m in _imports(name, path) if m.startswith("archsim")]
    assert offenders == []


def test_the_kernel_knows_nothing_above_it() -> None:
    graph = package_graph()
    assert graph["archsim.kernel"] <= {"archsim.errors"}


@pytest.mark.parametrize("module", ["archsim.api", "archsim.run", "archsim.mapping", "archsim.hardware",
                                    "archsim.config", "archsim.report"])
def test_the_simulator_core_does_not_import_torch(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


if __name__ == "__main__":  # print the graph: python tests/test_import_graph.py
    for node, deps in sorted(package_graph().items()):
        print(f"{node}: {', '.join(sorted(deps)) or '-'}")

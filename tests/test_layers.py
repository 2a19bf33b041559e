"""The package layers of ARCHITECTURE.md hold: no import goes upward or sideways, none reaches into another package's
private names, and no two modules import each other. Every import counts, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "robostack"

# Lowest first. A package may import packages of lower layers; packages within one layer do not import each other.
LAYERS: list[set[str]] = [
    {"errors", "__init__"},
    {"config", "utils"},
    {"data"},
    {"sim", "policies"},
    {"runtime"},
    {"export", "compare"},
    {"eval"},
    {"train"},
    {"algos"},
    {"bench", "teleop"},
    {"ros"},
    {"cli"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) for every ``robostack`` import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("robostack")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robostack"):
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


FILES = sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_layer():
    assert {_package(f) for f in FILES} <= set(LAYER), {_package(f) for f in FILES} - set(LAYER)


def test_imports_go_down_the_layers():
    bad = []
    for f in FILES:
        src = _package(f)
        for module, _, line in _imports(f):
            parts = module.split(".")
            if len(parts) < 2:
                continue
            dst = parts[1]
            if dst != src and LAYER[dst] >= LAYER[src]:
                bad.append(
                    f"{f.relative_to(ROOT.parent)}:{line} imports {module} ({src} may not import {dst})"
                )
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages():
    bad = []
    for f in FILES:
        src = _package(f)
        for module, names, line in _imports(f):
            parts = module.split(".")
            if len(parts) >= 2 and parts[1] != src:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private or any(p.startswith("_") and not p.startswith("__") for p in parts):
                    bad.append(f"{f.relative_to(ROOT.parent)}:{line} imports {module} {private}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    modules = {_module(f): f for f in FILES}
    graph: dict[str, set[str]] = {}
    for name, f in modules.items():
        deps = set()
        for module, names, _ in _imports(f):
            for target in [f"{module}.{n}" for n in names] + [module]:
                if target in modules and target != name:
                    deps.add(target)
                    break
        graph[name] = deps
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)

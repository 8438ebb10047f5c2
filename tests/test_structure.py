"""Package structure: no import cycle among spinlock modules, and no public class name defined twice.

The graph counts every import, those inside functions too (a lazy import that dodges a cycle still has
the cycle), and the packages an import executes on the way (``import spinlock.config.strict`` runs
``spinlock/config/__init__.py`` first).
"""

from __future__ import annotations

import ast
from collections import defaultdict

from test_registries import PACKAGE, cycles, module_name


def package_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # every package on the way, then the module itself
                    target = ".".join(parts[:i])
                    if target in files and target != mod and not mod.startswith(target + "."):
                        graph[mod].add(target)
    return graph


def test_package_graph_sees_package_inits_and_lazy_imports():
    graph = package_graph()
    assert "spinlock.config" in graph["spinlock.ics.params"]  # the package its import runs first
    assert "spinlock.operators.registry" in graph["spinlock.config.models"]  # imported inside a validator


def test_no_import_cycle_among_spinlock_modules():
    assert cycles(package_graph()) == []


def test_no_public_class_name_is_defined_twice():
    where = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(module_name(path))
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}

"""The IC and operator registries: self-registration without import cycles, and lookups that name the valid
choices.

The import graph is read from the source (``ast``), counting imports inside functions too: a registry that
imports its entries lazily to dodge a cycle still has the cycle.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import spinlock
from spinlock.config.models import OperatorsConfig
from spinlock.ics import base as ic_base
from spinlock.ics.registry import generate_ic, get_ic_type
from spinlock.operators import base as op_base
from spinlock.operators.names import FAMILY_NAMES
from spinlock.operators.registry import check_names, get_family
from spinlock.rng import BatchRandom, derive_key

PACKAGE = Path(spinlock.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module → spinlock modules it imports (anywhere in its body), for the modules of ``packages``."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:  # `from a.b import c`: c may be a module or a name in a.b
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        if not mod.startswith(packages):
            continue
        graph[mod] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {t for n in names if n.startswith("spinlock.") and (t := resolve(n)) not in (None, mod)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while comp[-1:] != [v]:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_registry_packages_have_no_import_cycle():
    graph = import_graph(("spinlock.ics", "spinlock.operators"))
    assert {"spinlock.ics.registry", "spinlock.ics.types.tier0", "spinlock.operators.registry"} <= set(graph)
    assert "spinlock.ics.types" in graph["spinlock.ics.registry"]  # the registry imports its entries...
    assert "spinlock.ics.base" in graph["spinlock.ics.types.tier0"]
    assert cycles(graph) == []  # ...and nothing imports the registry back


def test_tiers_and_families_do_not_import_each_other():
    graph = import_graph(("spinlock.ics", "spinlock.operators"))
    for mod, deps in graph.items():
        if mod.startswith("spinlock.ics.types.tier"):
            assert not {d for d in deps if d.startswith("spinlock.ics.types")}, mod
    assert not graph["spinlock.operators.uafno"] & {"spinlock.operators.cnn", "spinlock.operators.registry"}
    assert not graph["spinlock.operators.cnn"] & {"spinlock.operators.uafno", "spinlock.operators.registry"}


def test_get_family_names_the_choices():
    assert {get_family("cnn").name, get_family("uafno").name} == {"cnn", "uafno"}
    with pytest.raises(ValueError, match=r"unknown operator family 'fno'; expected one of \['cnn', 'uafno'\]"):
        get_family("fno")


def test_config_family_choices_are_the_registered_families():
    """``operators.family`` accepts, and its schema lists, exactly the registered families."""
    family = OperatorsConfig.model_fields["family"].annotation
    assert sorted(op_base.FAMILIES) == sorted(FAMILY_NAMES) == sorted(typing.get_args(family)) == ["cnn", "uafno"]
    assert OperatorsConfig.model_json_schema()["properties"]["family"]["enum"] == ["cnn", "uafno"]
    with pytest.raises(ValidationError, match="Input should be 'cnn' or 'uafno'"):
        OperatorsConfig(family="fno")
    check_names(["uafno", "cnn"])
    with pytest.raises(RuntimeError, match=r"registered operator families \['cnn', 'fno', 'uafno'\] differ"):
        check_names(["cnn", "uafno", "fno"])
    with pytest.raises(RuntimeError, match=r"families \['cnn'\] differ"):
        check_names(["cnn"])


def test_a_family_registers_itself_by_name(monkeypatch):
    monkeypatch.setattr(op_base, "FAMILIES", {})

    class Intermediate(op_base.OperatorFamily):  # no name: an abstract intermediate, not registered
        pass

    class Probe(Intermediate):
        name = "probe"

    assert op_base.FAMILIES == {"probe": Probe}
    with pytest.raises(ValueError, match="operator family 'probe' registered twice"):

        class Again(Intermediate):
            name = "probe"


def test_ic_registration_refuses_duplicates_and_unknown_tiers(monkeypatch):
    monkeypatch.setattr(ic_base, "REGISTERED", dict(ic_base.REGISTERED))
    core = get_ic_type("gaussian_random_field")
    with pytest.raises(ValueError, match="'gaussian_random_field' registered twice"):
        ic_base.register("gaussian_random_field", 0, core.params, "again")(core.raw)
    with pytest.raises(ValueError, match="tier must be one of"):
        ic_base.register("new_type", 5, core.params, "tier five")(core.raw)


def test_generate_ic_standardises_the_registered_core_once():
    """The registry owns the amplitude convention: a registered core is unstandardised, and generate_ic
    returns exactly standardize(core)."""
    keys = [derive_key(3, "registry", i) for i in range(3)]
    for name in ("gaussian_random_field", "localized", "error_correcting_code"):
        ic = get_ic_type(name)
        raw = ic.raw(ic.params(), BatchRandom(keys), 2, 16, torch.device("cpu"))
        moments = torch.stack([raw.mean(dim=(-2, -1)), raw.std(dim=(-2, -1), correction=0) - 1])
        assert moments.abs().max() > 0.05, f"{name}: the core is already standardised"
        assert torch.equal(generate_ic(name, {}, keys, 2, 16), ic_base.standardize(raw).float())

"""Map Sobol points onto the operator parameter space and the IC mix.

Dimension order: the non-fixed parameters in config order, then (when the IC mix has more than one
entry) one dimension choosing the IC entry by weight. Fixed parameters consume no dimension; their
``unit`` column is NaN. A family may re-map parameters whose usable values depend on other ones
(``OperatorFamily.map_dependent``: U-AFNO ``modes`` on ``levels``), so every stored value is in effect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spinlock.config.parameters import ChoiceSpec, ParameterSpec
from spinlock.operators.registry import get_family
from spinlock.sampling.sobol import sobol_points


@dataclass(frozen=True)
class Design:
    """What a run's Sobol design depends on (``generate.design`` reads it from the run config)."""

    parameters: dict[str, ParameterSpec]
    """The operator parameter space, in dimension order."""
    ic_weights: tuple[float, ...]
    """Probabilities of the IC mix entries; a mix of more than one takes the last dimension."""
    num_operators: int
    seed: int
    scramble: str
    """``owen`` or ``none`` (``sampling.scramble``)."""
    family: str
    grid: int
    """The operator family and grid, for parameters whose usable values depend on others."""


@dataclass(frozen=True)
class SampledSet:
    """Rows for a set of global operator indices."""

    index: np.ndarray  # [n] int64
    unit: np.ndarray  # [n, P] float64, NaN for fixed parameters
    values: np.ndarray  # [n, P] float64, choices as index
    ic_entry: np.ndarray  # [n] int64, index into config.initial_conditions.mix
    names: tuple[str, ...]


def sampled_dimensions(parameters: Mapping[str, ParameterSpec], ic_entries: int) -> tuple[list[str], bool]:
    """Names of parameters that consume a Sobol dimension, and whether the IC mix (of ``ic_entries``) takes one."""
    free = [name for name, spec in parameters.items() if not spec.is_fixed]
    return free, ic_entries > 1


@lru_cache(maxsize=8)
def _all_points(n: int, d: int, seed: int, scramble: str) -> np.ndarray:
    return sobol_points(n, d, seed, scramble)


def all_unit_points(design: Design) -> np.ndarray:
    """[N, d] unit points of the whole run (d = number of sampled dimensions)."""
    free, ic_dim = sampled_dimensions(design.parameters, len(design.ic_weights))
    d = len(free) + int(ic_dim)
    pts = _all_points(design.num_operators, d, design.seed, design.scramble)
    pts.setflags(write=False)
    return pts


def sample(design: Design, indices: np.ndarray | range) -> SampledSet:
    """The design's rows for global operator ``indices`` (each row depends only on its index)."""
    idx = np.asarray(list(indices) if isinstance(indices, range) else indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= design.num_operators):
        raise IndexError(f"operator indices out of range [0, {design.num_operators})")
    pts = all_unit_points(design)[idx]
    free, ic_dim = sampled_dimensions(design.parameters, len(design.ic_weights))
    names = tuple(design.parameters)
    unit = np.full((len(idx), len(names)), np.nan)
    values = np.empty((len(idx), len(names)))
    for j, (name, spec) in enumerate(design.parameters.items()):
        if spec.is_fixed:
            values[:, j] = spec.map(np.zeros(len(idx)))
        else:
            u = pts[:, free.index(name)]
            unit[:, j] = u
            values[:, j] = spec.map(u)
    get_family(design.family).map_dependent(design.parameters, unit, values, design.grid)
    if ic_dim:
        probs = ChoiceSpec(type="choice", values=list(range(len(design.ic_weights))), weights=list(design.ic_weights))
        ic_entry = probs.map(pts[:, -1]).astype(np.int64)
    else:
        ic_entry = np.zeros(len(idx), dtype=np.int64)
    return SampledSet(idx, unit, values, ic_entry, names)


def choices_json(parameters: Mapping[str, ParameterSpec]) -> str:
    """JSON {name: [values]} for choice parameters (values stored as indices)."""
    return json.dumps({n: s.values for n, s in parameters.items() if isinstance(s, ChoiceSpec)})

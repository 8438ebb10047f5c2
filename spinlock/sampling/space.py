"""Map Sobol points onto the operator parameter space and the IC mix.

Dimension order: the non-fixed parameters in config order, then (when the IC mix has more than one
entry) one dimension choosing the IC entry by weight. Fixed parameters consume no dimension; their
``unit`` column is NaN. A family may re-map parameters whose usable values depend on other ones
(``OperatorFamily.map_dependent``: U-AFNO ``modes`` on ``levels``), so every stored value is in effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spinlock.config.models import RunConfig
from spinlock.config.parameters import ChoiceSpec
from spinlock.operators.registry import get_family
from spinlock.sampling.sobol import sobol_points


@dataclass(frozen=True)
class SampledSet:
    """Rows for a set of global operator indices."""

    index: np.ndarray  # [n] int64
    unit: np.ndarray  # [n, P] float64, NaN for fixed parameters
    values: np.ndarray  # [n, P] float64, choices as index
    ic_entry: np.ndarray  # [n] int64, index into config.initial_conditions.mix
    names: tuple[str, ...]


def sampled_dimensions(cfg: RunConfig) -> tuple[list[str], bool]:
    """Names of parameters that consume a Sobol dimension, and whether the IC mix takes one."""
    free = [name for name, spec in cfg.parameters.items() if not spec.is_fixed]
    return free, len(cfg.initial_conditions.mix) > 1


@lru_cache(maxsize=8)
def _all_points(n: int, d: int, seed: int, scramble: str) -> np.ndarray:
    return sobol_points(n, d, seed, scramble)


def all_unit_points(cfg: RunConfig) -> np.ndarray:
    """[N, d] unit points of the whole run (d = number of sampled dimensions)."""
    free, ic_dim = sampled_dimensions(cfg)
    d = len(free) + int(ic_dim)
    pts = _all_points(cfg.simulation.num_operators, d, cfg.seed, cfg.sampling.scramble)
    pts.setflags(write=False)
    return pts


def sample(cfg: RunConfig, indices: np.ndarray | range) -> SampledSet:
    idx = np.asarray(list(indices) if isinstance(indices, range) else indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= cfg.simulation.num_operators):
        raise IndexError(f"operator indices out of range [0, {cfg.simulation.num_operators})")
    pts = all_unit_points(cfg)[idx]
    free, ic_dim = sampled_dimensions(cfg)
    names = tuple(cfg.parameters)
    unit = np.full((len(idx), len(names)), np.nan)
    values = np.empty((len(idx), len(names)))
    for j, (name, spec) in enumerate(cfg.parameters.items()):
        if spec.is_fixed:
            values[:, j] = spec.map(np.zeros(len(idx)))
        else:
            u = pts[:, free.index(name)]
            unit[:, j] = u
            values[:, j] = spec.map(u)
    get_family(cfg.operators.family).map_dependent(cfg.parameters, unit, values, cfg.simulation.grid)
    if ic_dim:
        probs = ChoiceSpec(type="choice", values=list(range(len(cfg.initial_conditions.mix))),
                           weights=cfg.initial_conditions.probabilities())
        ic_entry = probs.map(pts[:, -1]).astype(np.int64)
    else:
        ic_entry = np.zeros(len(idx), dtype=np.int64)
    return SampledSet(idx, unit, values, ic_entry, names)


def choices_json(cfg: RunConfig) -> str:
    """JSON {name: [values]} for choice parameters (values stored as indices)."""
    return json.dumps({n: s.values for n, s in cfg.parameters.items() if isinstance(s, ChoiceSpec)})

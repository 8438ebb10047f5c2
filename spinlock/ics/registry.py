"""One registry of initial-condition types: name → tier, parameter model, generator.

A generator has the signature ``generate(params, rng, channels, grid, device) -> Tensor[B, C, H, W]``
where ``rng`` is a :class:`spinlock.rng.BatchRandom` holding one key per sample: every random quantity
of sample ``b`` (positions, orientations, noise) must come from ``rng`` so a sample depends only on its
key. Outputs follow the amplitude convention (zero mean, unit std per sample and channel, see
:func:`standardize`), float32, on ``device``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel

from spinlock.rng import BatchRandom

Generator = Callable[[BaseModel, BatchRandom, int, int, torch.device], torch.Tensor]

TIER_NAMES = {
    0: "baseline",
    1: "foundational",
    2: "specialized",
    3: "complex systems",
    4: "research frontiers",
}


@dataclass(frozen=True)
class ICType:
    name: str
    tier: int
    params: type[BaseModel]
    generate: Generator
    description: str
    channels: str = "independent draws per channel"
    """How the C channels of one sample differ (independent draws, phase shifts, components...)."""


_REGISTRY: dict[str, ICType] = {}


def register(
    name: str,
    tier: int,
    params: type[BaseModel],
    description: str,
    channels: str = "independent draws per channel",
) -> Callable[[Generator], Generator]:
    """Decorator registering a generator under ``name`` (``channels`` documents the channel convention)."""

    def deco(fn: Generator) -> Generator:
        if name in _REGISTRY:
            raise ValueError(f"IC type {name!r} registered twice")
        if tier not in TIER_NAMES:
            raise ValueError(f"tier must be one of {sorted(TIER_NAMES)}, got {tier}")
        _REGISTRY[name] = ICType(name, tier, params, fn, description, channels)
        return fn

    return deco


def _load_all() -> None:
    import spinlock.ics.types  # noqa: F401  (registers every type)


def ic_types() -> dict[str, ICType]:
    _load_all()
    return dict(_REGISTRY)


def get_ic_type(name: str) -> ICType:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown IC type {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def standardize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Zero mean, unit std per sample and channel over (H, W); a constant channel becomes 0."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    xc = x - mean
    std = xc.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    return torch.where(std > eps, xc / std.clamp_min(eps), torch.zeros_like(xc))


def generate_ic(
    name: str, params: dict, keys: list[int], channels: int, grid: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Generate [B, C, H, W] fields of one type for per-sample ``keys``."""
    ic = get_ic_type(name)
    model = ic.params(**params)
    dev = torch.device(device)
    out = ic.generate(model, BatchRandom(keys, dev), channels, grid, dev)
    expected = (len(keys), channels, grid, grid)
    if tuple(out.shape) != expected:
        raise RuntimeError(f"IC {name!r} returned shape {tuple(out.shape)}, expected {expected}")
    return out.float()

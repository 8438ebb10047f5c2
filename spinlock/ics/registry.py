"""One registry of initial-condition types: name → tier, parameter model, unstandardised core.

Importing :mod:`spinlock.ics.types` registers all 28 types (``@register`` in :mod:`spinlock.ics.base`,
a leaf module, so nothing here is imported back). :func:`generate_ic` is the one way to produce fields:
it runs a type's core and applies the amplitude convention once for every type: zero mean, unit std
per sample and channel (:func:`standardize`), float32, on ``device``.
"""

from __future__ import annotations

import torch

import spinlock.ics.types  # noqa: F401  (importing the tier modules registers every type)
from spinlock.ics.base import REGISTERED, TIER_NAMES, ICType, standardize
from spinlock.rng import BatchRandom

__all__ = ["TIER_NAMES", "ICType", "generate_ic", "get_ic_type", "ic_types", "standardize"]


def ic_types() -> dict[str, ICType]:
    """Every registered type by name, in registration order (tier by tier)."""
    return dict(REGISTERED)


def get_ic_type(name: str) -> ICType:
    if name not in REGISTERED:
        raise ValueError(f"unknown IC type {name!r}; expected one of {sorted(REGISTERED)}")
    return REGISTERED[name]


def generate_ic(
    name: str, params: dict, keys: list[int], channels: int, grid: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Generate [B, C, H, W] float32 fields of one type for per-sample ``keys``, standardised."""
    ic = get_ic_type(name)
    model = ic.params(**params)
    dev = torch.device(device)
    out = ic.raw(model, BatchRandom(keys, dev), channels, grid, dev)
    expected = (len(keys), channels, grid, grid)
    if tuple(out.shape) != expected:
        raise RuntimeError(f"IC {name!r} returned shape {tuple(out.shape)}, expected {expected}")
    return standardize(out).float()

"""What an IC type is, the decorator that registers one, and the amplitude convention.

A leaf of the IC package: the tier modules in :mod:`spinlock.ics.types` import it and it imports none of
them, so registration has no import cycle (neuraloperator's pattern). Importing ``spinlock.ics.types``
runs every ``@register``; :mod:`spinlock.ics.registry` does that and answers lookups.

A registered function is a type's *unstandardised core*,
``raw(params, rng, channels, grid, device) -> Tensor[B, C, H, W]``, where ``rng`` is a
:class:`spinlock.rng.BatchRandom` holding one key per sample: every random quantity of sample ``b``
(positions, orientations, noise) comes from ``rng``, so a sample depends only on its key. The core is
what the property tests measure; :func:`spinlock.ics.registry.generate_ic` applies the amplitude
convention (:func:`standardize`) to every type, once.
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
    raw: Generator
    """The unstandardised core [B, C, H, W] (see the module docstring)."""
    description: str
    channels: str = "independent draws per channel"
    """How the C channels of one sample differ (independent draws, phase shifts, components...)."""


REGISTERED: dict[str, ICType] = {}
"""Every registered type by name, in registration order (complete once ``spinlock.ics.types`` is imported)."""


def register(
    name: str,
    tier: int,
    params: type[BaseModel],
    description: str,
    channels: str = "independent draws per channel",
) -> Callable[[Generator], Generator]:
    """Decorator registering an unstandardised core under ``name`` (``channels`` documents the channel
    convention); the function itself is returned unchanged."""

    def deco(fn: Generator) -> Generator:
        if name in REGISTERED:
            raise ValueError(f"IC type {name!r} registered twice")
        if tier not in TIER_NAMES:
            raise ValueError(f"tier must be one of {sorted(TIER_NAMES)}, got {tier}")
        REGISTERED[name] = ICType(name, tier, params, fn, description, channels)
        return fn

    return deco


def standardize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Zero mean, unit std per sample and channel over (H, W); a constant channel becomes 0."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    xc = x - mean
    std = xc.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    return torch.where(std > eps, xc / std.clamp_min(eps), torch.zeros_like(xc))

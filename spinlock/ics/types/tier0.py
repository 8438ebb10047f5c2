"""Tier 0 — baseline IC types."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from spinlock.ics.registry import register, standardize
from spinlock.ics.spectral import filtered_noise, power_law_amplitude


class GRFParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = Field(3.0, ge=0.0, le=8.0)
    """Spectral slope: isotropic power spectrum P(k) ∝ |k|^-beta (k in cycles per domain)."""


@register(
    "gaussian_random_field",
    tier=0,
    params=GRFParams,
    description="Stationary Gaussian random field with power spectrum P(k) ∝ k^-beta; channels independent.",
)
def gaussian_random_field(p: GRFParams, rng, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    white = rng.normal(channels, grid, grid)
    return standardize(filtered_noise(white, power_law_amplitude(grid, p.beta, device)))

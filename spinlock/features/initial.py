"""INITIAL features: 14 hand-crafted statistics of the initial condition.

They reuse the per-step definitions (docs/features.md) on the IC ``[B, C, H, W]``: moments, gradient and
Laplacian energy, anisotropy, histogram entropy, spectral slope and centroid, connected components,
cross-channel correlation. The seed's INITIAL representation is 42-D: these 14 plus a 28-D learned IC
embedding trained by the tokenizer (``spinlock.encoding``), which is not computed here.
"""

from __future__ import annotations

import torch

from spinlock.config.models import RunConfig
from spinlock.features import fields
from spinlock.features.block import FeatureBlock, check_names
from spinlock.features.morphology import morphology_stats
from spinlock.features.names import feature_names
from spinlock.features.spectral import Spectrum


@torch.no_grad()
def extract_initial(cfg: RunConfig, ic: torch.Tensor) -> FeatureBlock:
    """ic [B, C, H, W] (finite) → FeatureBlock [B, 14] named ``feature_names(cfg)["initial"]``."""
    sim = cfg.simulation
    expected = (sim.channels, sim.grid, sim.grid)
    if ic.dim() != 4 or tuple(ic.shape[1:]) != expected:
        raise ValueError(f"initial conditions must be [B, {', '.join(map(str, expected))}], got {tuple(ic.shape)}")
    x = ic.to(torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):  # float32 whatever the caller's region
        return _extract(cfg, x)


def _extract(cfg: RunConfig, x: torch.Tensor) -> FeatureBlock:
    bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
    if bad:
        raise ValueError(f"{bad} initial condition(s) contain non-finite values")
    sim = cfg.simulation
    st = fields.standardize(x)
    vals = {
        **fields.spatial_step(st),
        **fields.spatial_field(st),
        **Spectrum(sim.grid, x.device).stats(st),
        **morphology_stats(st, cfg.features.morphology_threshold),
        **fields.cross_step(st),
    }
    names = feature_names(cfg)["initial"]
    check_names("initial", tuple(n for n in names if n in vals), names)
    values = torch.stack([vals[n] for n in names], dim=-1)
    return FeatureBlock(values.cpu().numpy().astype("float32"), names, {})

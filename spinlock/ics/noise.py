"""Gaussian white noise for IC generators, four times cheaper in hashing than ``BatchRandom.normal``.

Hashing dominates IC generation cost on CPU (one SplitMix64 evaluation per 53-bit uniform). One
53-bit uniform holds two independent uniforms (its top 26 and low 27 bits), and one Box–Muller
transform of a uniform pair gives *two* independent normals, so a normal costs a quarter hash here
instead of two. The resolution of the radial uniform (2^-26) truncates |z| at about 6.1σ, which is
irrelevant for initial conditions. Like every ``BatchRandom`` draw, sample ``b`` depends only on
``keys[b]`` and the call sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from spinlock.rng import BatchRandom

_HI = float(1 << 26)


def white_noise(rng: BatchRandom, *shape: int) -> torch.Tensor:
    """[B, *shape] float32 i.i.d. standard normal (one ``rng`` call)."""
    n = math.prod(int(s) for s in shape)
    m = (n + 1) // 2
    u = rng.uniform64(m) * _HI
    hi = torch.floor(u)
    u1 = (hi + 0.5) / _HI  # top 26 bits, in (0, 1)
    theta = (2.0 * math.pi) * (u - hi)  # low 27 bits
    r = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1).reshape(rng.batch, 2 * m)
    return z[:, :n].reshape(rng.batch, *shape).float()


def coarse_size(grid: int, k_max: float) -> int:
    """Side of the smallest even coarse grid whose modes cover |k| <= ``k_max``; at most ``grid``."""
    m = 2 * math.ceil(k_max) + 2
    return grid if m >= grid else m


def lowpass_noise(
    rng: BatchRandom,
    lead: tuple[int, ...],
    grid: int,
    k_max: float,
    transfer: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Filtered white noise [B, *lead, H, W] float32, for filters that vanish above |k| = ``k_max``.

    ``transfer(k)`` maps |k| [m, m//2+1] (cycles per domain) to an amplitude broadcastable to
    [B, *lead, m, m//2+1]. The noise is drawn on a coarse ``m × m`` grid (``m`` from :func:`coarse_size`;
    ``k_max`` must be a config bound, never a per-sample value, so the draw shape does not depend on the
    batch), filtered there, and synthesised on the fine grid (modes beyond the coarse grid are zero, the
    coarse Nyquist row/column is dropped). Costs (m/grid)² of a fine-grid draw. Not normalised.
    """
    m = coarse_size(grid, k_max)
    spec = torch.fft.rfft2(white_noise(rng, *lead, m, m))
    ky = torch.fft.fftfreq(m, d=1.0 / m, device=spec.device)[:, None]
    kx = torch.fft.rfftfreq(m, d=1.0 / m, device=spec.device)[None, :]
    spec = spec * transfer(torch.sqrt(ky**2 + kx**2)).to(spec.real.dtype)
    if m == grid:
        return torch.fft.irfft2(spec, s=(grid, grid))
    h = m // 2
    gap = torch.zeros(*spec.shape[:-2], grid - 2 * h + 1, h, dtype=spec.dtype, device=spec.device)
    rows = torch.cat([spec[..., :h, :h], gap, spec[..., h + 1 :, :h]], dim=-2)  # [.., grid, h]
    return torch.fft.irfft(torch.fft.ifft(rows, dim=-2), n=grid, dim=-1)


def unit_variance(y: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per field over the last two dims (float32)."""
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    return (y / y.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-30)).float()


def quantile_rows(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-field quantile: ``x`` [..., H, W], ``q`` broadcastable to [...] → [..., 1, 1] (kthvalue selection,
    no size limit, a pure function of each field)."""
    flat = x.flatten(-2)
    n = flat.shape[-1]
    rank = (q.double() * (n - 1)).round().long().clamp(0, n - 1).expand(flat.shape[:-1]).reshape(-1)
    rows = flat.reshape(-1, n)
    out = torch.empty(rows.shape[0], dtype=x.dtype, device=x.device)
    for r in torch.unique(rank).tolist():  # kthvalue needs one k per call; ranks repeat across the batch
        sel = (rank == r).nonzero()[:, 0]
        out[sel] = rows[sel].kthvalue(r + 1, dim=-1).values
    return out.reshape(*flat.shape[:-1], 1, 1)


def smooth_random_field(
    rng: BatchRandom, lead: tuple[int, ...], grid: int, sigma: torch.Tensor, sigma_min: float
) -> torch.Tensor:
    """Gaussian-correlated random field, unit variance per field: [B, *lead, H, W] float32.

    White noise blurred by a periodic Gaussian of std ``sigma`` ([B, *lead] or broadcastable, domain
    fractions); ``sigma_min`` (a config bound) sets the coarse draw, which keeps every mode the blur
    leaves above 1e-5 (|k| < 0.76 / σ).
    """
    s = torch.as_tensor(sigma, dtype=torch.float32, device=rng.device)[..., None, None]

    def gaussian(k: torch.Tensor) -> torch.Tensor:
        return torch.exp(-2.0 * math.pi**2 * s**2 * k**2)

    return unit_variance(lowpass_noise(rng, lead, grid, 0.76 / max(sigma_min, 1e-9), gaussian))

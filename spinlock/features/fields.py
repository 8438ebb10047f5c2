"""Statistics of one step's fields ``x [..., C, H, W]`` (periodic H×W grid), vectorised over the leading dims.

Per-channel statistics are averaged over channels (so widths never depend on C); the result of every
function is a dict ``{stat: Tensor[...]}`` keyed like the registry (``spatial.skew``). Degenerate fields
are handled by continuity, not by NaN: the standardised field z = (x - μ)/σ̃ uses
σ̃² = σ² + 1e-12·mean(x²) + 1e-36, so a constant field gives z = 0 and all shape statistics are finite;
magnitudes are reported as log10 floored at 1e-30. Cross-channel statistics are NaN for C = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

TINY = 1e-30
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def log10_floor(v: torch.Tensor) -> torch.Tensor:
    return torch.log10(v.clamp_min(TINY))


class Standardized:
    """A field x [..., C, H, W] and its per-channel moments mu/var/msq/scale [..., C].

    The standardised field ``z`` [..., C, H, W] is computed on first use; ``memo`` caches other
    intermediates shared by several statistics of the same step.
    """

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.mu = x.mean(dim=(-2, -1))
        self._xc = x - self.mu[..., None, None]  # two-pass variance: exact for fields far from zero mean
        self.var = self._xc.square().mean(dim=(-2, -1))
        self.msq = self.var + self.mu.square()
        self.scale = torch.sqrt(self.var + 1e-12 * self.msq + 1e-36)
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def z(self) -> torch.Tensor:
        return self.memo("z", lambda: self._xc / self.scale[..., None, None])

    def memo(self, key: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]


def standardize(x: torch.Tensor) -> Standardized:
    return Standardized(x)


def nan_like(ref: torch.Tensor) -> torch.Tensor:
    return torch.full_like(ref, float("nan"))


FINE_BINS, FINE_LO, FINE_HI = 160, -5.0, 5.0
"""Histogram of z used for quantiles (bin width 1/16; |q05|, |q95| <= sqrt(20) < 5 by Chebyshev)."""


def fine_histogram(z: torch.Tensor) -> torch.Tensor:
    """Counts [..., 160] of the last dim of z on [-5, 5] (values outside go to the edge bins)."""
    scale = FINE_BINS / (FINE_HI - FINE_LO)
    idx = ((z.clamp(FINE_LO, FINE_HI) - FINE_LO) * scale).long().clamp_(max=FINE_BINS - 1)
    counts = torch.zeros(*z.shape[:-1], FINE_BINS, device=z.device, dtype=z.dtype)
    return counts.scatter_add_(-1, idx, torch.ones_like(z))


def histogram_quantiles(counts: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Quantiles [..., len(qs)] from fine-histogram counts, linear within the bin (a sort is ~10x slower)."""
    cdf = counts.cumsum(-1)
    cdf = cdf / cdf[..., -1:].clamp_min(1)
    q = torch.tensor(qs, dtype=cdf.dtype, device=cdf.device).expand(*cdf.shape[:-1], len(qs)).contiguous()
    j = torch.searchsorted(cdf, q).clamp_(max=FINE_BINS - 1)
    below = torch.where(j > 0, cdf.gather(-1, (j - 1).clamp_min(0)), 0.0)
    mass = cdf.gather(-1, j) - below
    frac = ((q - below) / mass.clamp_min(1e-12)).clamp(0.0, 1.0)
    width = (FINE_HI - FINE_LO) / FINE_BINS
    return FINE_LO + (j.to(cdf.dtype) + frac) * width


def entropy_of_counts(counts: torch.Tensor) -> torch.Tensor:
    """Shannon entropy / ln(bins) of histogram counts [..., bins]."""
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    return -(p * torch.log(p.clamp_min(TINY))).sum(-1) / math.log(counts.shape[-1])


def abs_max(s: Standardized) -> torch.Tensor:
    """max |x| per channel, [..., C] (memoised; one aminmax pass instead of abs + amax)."""

    def compute() -> torch.Tensor:
        lo, hi = torch.aminmax(s.x.flatten(-2), dim=-1)
        return torch.maximum(hi, -lo)

    return s.memo("absmax", compute)


def z_entropy(s: Standardized) -> torch.Tensor:
    """Entropy / ln 16 of the 16-bin histogram of z clipped to [-4, 4], per channel (memoised)."""

    def compute() -> torch.Tensor:
        counts = s.memo("fine_hist", lambda: fine_histogram(s.z.flatten(-2)))
        # 20 bins of width 1/2 on [-5, 5]; fold the outer two on each side: 16 bins on [-4, 4], clipped
        half = counts.unflatten(-1, (20, 8)).sum(-1)
        coarse = torch.cat(
            [half[..., :3].sum(-1, keepdim=True), half[..., 3:17], half[..., 17:].sum(-1, keepdim=True)], -1
        )
        return entropy_of_counts(coarse)

    return s.memo("entropy", compute)


def grad_energy(s: Standardized) -> torch.Tensor:
    """mean |∇⁺x|² per channel (forward differences), [..., C] (memoised; the spectrum also sets it)."""

    def compute() -> torch.Tensor:
        x = s.x
        return (torch.roll(x, -1, -1) - x).square().mean(dim=(-2, -1)) + (torch.roll(x, -1, -2) - x).square().mean(
            dim=(-2, -1))

    return s.memo("grad_energy", compute)


def spatial_step(s: Standardized) -> dict[str, torch.Tensor]:
    """Moments and extremes (the cheap step statistics); [..., C, H, W] → [...]."""
    z = s.z.flatten(-2)
    z2 = z.square()
    n = z.shape[-1]
    out = {
        "spatial.mean": s.mu,
        "spatial.offset": s.mu / torch.sqrt(s.msq + 1e-36),
        "spatial.log_std": log10_floor(s.var.sqrt()),
        "spatial.log_absmax": log10_floor(abs_max(s)),
        "spatial.skew": torch.linalg.vecdot(z2, z) / n,  # fused multiply-reduce: no [.., N] temporary
        "spatial.kurt": torch.linalg.vecdot(z2, z2) / n - 3.0,
    }
    return {k: v.mean(-1) for k, v in out.items()}


def spatial_field(s: Standardized) -> dict[str, torch.Tensor]:
    """Quantiles and entropy (one fine histogram), total variation and sign crossings of z → [...].

    Gradient and Laplacian energies are computed exactly from the spectrum (:mod:`spectral`).
    """
    z = s.z
    counts = s.memo("fine_hist", lambda: fine_histogram(z.flatten(-2)))
    qs = histogram_quantiles(counts, QUANTILES)
    out = {f"spatial.q{round(q * 100):02d}": qs[..., i] for i, q in enumerate(QUANTILES)}
    out["spatial.entropy"] = z_entropy(s)
    nx, ny = torch.roll(z, -1, -1), torch.roll(z, -1, -2)
    out["spatial.tv"] = ((nx - z).abs() + (ny - z).abs()).mean(dim=(-2, -1))
    pos = z > 0
    cross = (pos != (nx > 0)).float().mean(dim=(-2, -1)) + (pos != (ny > 0)).float().mean(dim=(-2, -1))
    out["spatial.crossings"] = 0.5 * cross
    return {k: v.mean(-1) for k, v in out.items()}


def _offdiag_stats(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, mean |.| and max |.| of the off-diagonal entries of [..., C, C] (no boolean indexing)."""
    C = m.shape[-1]
    diag = torch.diagonal(m, dim1=-2, dim2=-1)
    pairs = C * (C - 1)
    a = m.abs()
    mean = (m.sum(dim=(-2, -1)) - diag.sum(-1)) / pairs
    mean_abs = (a.sum(dim=(-2, -1)) - diag.abs().sum(-1)) / pairs
    eye = torch.eye(C, dtype=m.dtype, device=m.device)
    max_abs = (a - eye * a).amax(dim=(-2, -1))  # |m| >= 0, so zeroing the diagonal does not change the max
    return mean, mean_abs, max_abs


def cross_step(s: Standardized) -> dict[str, torch.Tensor]:
    """Spatial correlations between channels; NaN for C = 1."""
    C = s.z.shape[-3]
    if C < 2:
        nan = nan_like(s.mu[..., 0])
        return {"cross.corr_mean": nan, "cross.corr_abs": nan, "cross.corr_maxabs": nan}
    zf = s.z.flatten(-2)
    corr = zf @ zf.transpose(-1, -2) / zf.shape[-1]
    mean, mean_abs, max_abs = _offdiag_stats(corr)
    return {"cross.corr_mean": mean, "cross.corr_abs": mean_abs, "cross.corr_maxabs": max_abs}


def adjacent_pairs(C: int) -> tuple[list[int], list[int]]:
    """(c, c+1 mod C) for C > 2, the single pair (0, 1) for C = 2."""
    if C == 2:
        return [0], [1]
    return list(range(C)), [(c + 1) % C for c in range(C)]


def cross_field(s: Standardized) -> dict[str, torch.Tensor]:
    """Histogram mutual information of adjacent channel pairs; NaN for C = 1."""
    C = s.z.shape[-3]
    if C < 2:
        return {"cross.mi": nan_like(s.mu[..., 0])}
    bins = 8
    idx = ((s.z.clamp(-3.0, 3.0) + 3.0) * (bins / 6.0)).long().clamp_(max=bins - 1).flatten(-2)
    a, b = adjacent_pairs(C)
    joint = idx[..., a, :] * bins + idx[..., b, :]
    counts = torch.zeros(*joint.shape[:-1], bins * bins, device=joint.device, dtype=s.z.dtype)
    counts.scatter_add_(-1, joint, torch.ones(joint.shape, device=joint.device, dtype=s.z.dtype))
    p = (counts / joint.shape[-1]).unflatten(-1, (bins, bins))
    pa, pb = p.sum(-1, keepdim=True), p.sum(-2, keepdim=True)
    ratio = p.clamp_min(TINY) / (pa * pb).clamp_min(TINY)
    mi = (p * torch.log(ratio)).sum(dim=(-2, -1))
    return {"cross.mi": mi.mean(-1)}


def lag_stats(prev: Standardized, cur: Standardized) -> dict[str, torch.Tensor]:
    """Lag-1 field correlations L_ab = corr(z_a(t-1), z_b(t)): field_acf1 and causality asymmetries."""
    C = cur.z.shape[-3]
    zp, zc = prev.z.flatten(-2), cur.z.flatten(-2)
    L = zp @ zc.transpose(-1, -2) / zc.shape[-1]  # [..., C, C]
    out = {"dynamics.field_acf1": torch.diagonal(L, dim1=-2, dim2=-1).mean(-1)}
    if C < 2:
        nan = nan_like(out["dynamics.field_acf1"])
        out.update({f"causality.{k}": nan for k in ("lag_cross", "asym_net", "asym_abs", "asym_max")})
        return out
    A = L - L.transpose(-1, -2)  # antisymmetric: the a < b entries carry all of it
    upper = torch.triu(torch.ones(C, C, dtype=L.dtype, device=L.device), diagonal=1)
    pairs = C * (C - 1) / 2
    out["causality.lag_cross"] = _offdiag_stats(L)[0]
    out["causality.asym_net"] = (A * upper).sum(dim=(-2, -1)) / pairs
    out["causality.asym_abs"] = A.abs().sum(dim=(-2, -1)) / (2 * pairs)
    out["causality.asym_max"] = A.abs().amax(dim=(-2, -1))
    return out


def step_change(prev: Standardized, cur: Standardized) -> torch.Tensor:
    """log10 RMS(x_t - x_{t-1}) / RMS(x_{t-1}) over (C, H, W); → [...]."""
    num = (cur.x - prev.x).square().mean(dim=(-3, -2, -1))
    return 0.5 * log10_floor(num / (prev.msq.mean(-1) + 1e-36))


def realization_spread(s: Standardized) -> torch.Tensor:
    """log10 of the RMS spread across realizations relative to the state RMS; [B, M, C, H, W] → [B]."""
    x = s.x
    if x.shape[1] < 2:
        return torch.full((x.shape[0],), float("nan"), device=x.device, dtype=x.dtype)
    dev = x - x.mean(dim=1, keepdim=True)  # (a strided torch.var over dim 1 is ~30x slower on CPU)
    var = dev.square().mean(dim=(1, 2, 3, 4))
    return 0.5 * log10_floor(var / (s.msq.mean(dim=(1, 2)) + 1e-36))


INVARIANT_SCALES = (1, 2, 4)


def invariants(s: Standardized) -> dict[str, torch.Tensor]:
    """L2 / L∞ norms, gradient energy and z-histogram entropy at block-averaging scales 1, 2, 4; → [...]."""
    x = s.x
    lead, (C, H, W) = x.shape[:-3], x.shape[-3:]
    out = {}
    for k in INVARIANT_SCALES:
        if k == 1:
            sk = s
        else:
            y = F.avg_pool2d(x.reshape(-1, C, H, W), k).reshape(*lead, C, H // k, W // k)
            sk = standardize(y)
        out[f"invariants.l2_s{k}"] = (0.5 * log10_floor(sk.msq)).mean(-1)
        out[f"invariants.linf_s{k}"] = log10_floor(abs_max(sk)).mean(-1)
        out[f"invariants.grad_s{k}"] = log10_floor(grad_energy(sk)).mean(-1)
        out[f"invariants.entropy_s{k}"] = z_entropy(sk).mean(-1)
    return out

"""Streaming (O(1) in T) aggregation of per-step statistics, masked per operator.

Each accumulator holds float64 sums over tensors ``[B, K, F]`` (B operators, K realizations or 1,
F statistics) and takes an ``alive`` [B] mask per update, so a diverged operator's statistics cover
its pre-divergence samples only and never touch other rows. Sums are shifted by each element's first
sample to avoid cancellation in variances and slopes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from spinlock.features.names import DRIFT_POOLS, POOLS


def _nan(shape: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.full(tuple(shape), float("nan"), dtype=torch.float64, device=device)


class TimePool:
    """mean/std/min/max/early/late/trend of values sampled at the known steps ``steps`` of a T-step run.

    Moment sums live in one [B, K, F, 6] tensor (n, Σd, Σd², Στ, Στ², Στd with d = v - first sample,
    τ = t/T) so an update is a handful of kernel launches whatever F is.
    """

    def __init__(self, steps: Sequence[int], total_steps: int, shape: Sequence[int], device: torch.device):
        self.steps = list(steps)
        n = len(self.steps)
        q = max(1, math.ceil(n / 4))
        self.early, self.late = set(self.steps[:q]), set(self.steps[n - q :])
        self.T = max(int(total_steps), 1)
        shape = tuple(shape)
        self.mom = torch.zeros(*shape, 6, dtype=torch.float64, device=device)
        self.win = torch.zeros(*shape, 4, dtype=torch.float64, device=device)  # early Σd, n, late Σd, n
        self.shift = torch.zeros(shape, dtype=torch.float64, device=device)
        self.lo = torch.full(shape, math.inf, dtype=torch.float64, device=device)
        self.hi = torch.full(shape, -math.inf, dtype=torch.float64, device=device)

    def update(self, t: int, values: torch.Tensor, alive: torch.Tensor) -> None:
        """Add the sample at step ``t`` (one of ``steps``): values [B, K, F], alive [B] bool.

        A NaN sample of a live row makes every pool of that element NaN (minimum/maximum propagate NaN).
        """
        v = values.to(torch.float64)
        m = alive.view(-1, 1, 1).expand_as(v)
        if t == self.steps[0]:
            # rows dead at the first sample stay dead: their shift is never used
            self.shift = v.clone()
        mf = m.to(torch.float64)
        d = torch.where(m, v - self.shift, 0.0)  # (not a product with mf: NaN * 0 is NaN)
        tau = t / self.T
        self.mom += torch.stack([mf, d, d * d, mf * tau, mf * (tau * tau), d * tau], dim=-1)
        self.lo = torch.where(m, torch.minimum(self.lo, v), self.lo)
        self.hi = torch.where(m, torch.maximum(self.hi, v), self.hi)
        if t in self.early:
            self.win[..., 0] += d
            self.win[..., 1] += mf
        if t in self.late:
            self.win[..., 2] += d
            self.win[..., 3] += mf

    def result(self) -> dict[str, torch.Tensor]:
        """{pool: [B, K, F]} with NaN where a pool has no (or too few) samples."""
        n, s1, s2, st, stt, sts = self.mom.unbind(-1)
        e_sum, e_n, l_sum, l_n = self.win.unbind(-1)
        nan = torch.full_like(n, float("nan"))
        safe = n.clamp_min(1)
        mean_d = s1 / safe
        var = (s2 - s1 * mean_d) / (n - 1).clamp_min(1)
        cov = sts - st * mean_d
        vt = stt - st * st / safe
        out = {
            "mean": torch.where(n > 0, self.shift + mean_d, nan),
            "std": torch.where(n > 1, var.clamp_min(0).sqrt(), nan),
            "min": torch.where(n > 0, self.lo, nan),
            "max": torch.where(n > 0, self.hi, nan),
            "early": torch.where(e_n > 0, self.shift + e_sum / e_n.clamp_min(1), nan),
            "late": torch.where(l_n > 0, self.shift + l_sum / l_n.clamp_min(1), nan),
            "trend": torch.where((n > 1) & (vt > 0), cov / vt.clamp_min(1e-300), nan),
        }
        assert tuple(out) == POOLS
        return out


class DriftPool:
    """drift/path/maxdev of a quantity relative to its value at step 0 (sampled at step 0 first)."""

    def __init__(self, shape: Sequence[int], device: torch.device):
        self.ref = _nan(shape, device)
        self.prev = _nan(shape, device)
        self.last = _nan(shape, device)
        self.path = torch.zeros(tuple(shape), dtype=torch.float64, device=device)
        self.n = torch.zeros(tuple(shape), dtype=torch.float64, device=device)
        self.maxdev = torch.zeros(tuple(shape), dtype=torch.float64, device=device)

    def start(self, values: torch.Tensor) -> None:
        self.ref = values.to(torch.float64).clone()
        self.prev = self.ref.clone()

    def update(self, values: torch.Tensor, alive: torch.Tensor) -> None:
        v = values.to(torch.float64)
        m = alive.view(-1, 1, 1).expand_as(v)
        self.path += torch.where(m, (v - self.prev).abs(), 0.0)
        self.maxdev = torch.where(m, torch.maximum(self.maxdev, (v - self.ref).abs()), self.maxdev)
        self.n += m.to(torch.float64)
        self.prev = torch.where(m, v, self.prev)
        self.last = torch.where(m, v, self.last)

    def result(self) -> dict[str, torch.Tensor]:
        nan = torch.full_like(self.n, float("nan"))
        out = {
            "drift": self.last - self.ref,
            "path": torch.where(self.n > 0, self.path / self.n.clamp_min(1), nan),
            "maxdev": torch.where(self.n > 0, self.maxdev, nan),
        }
        assert tuple(out) == DRIFT_POOLS
        return out

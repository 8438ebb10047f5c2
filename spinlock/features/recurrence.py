"""Recurrence of the coarse-grained state: detects fixed points and short cycles in O(1) memory in T.

A ring buffer holds the last ``RING`` states block-averaged to 8×8 ([B, M, RING, C·64]), written every
step. At each sampled step (the field steps) of the late half, d_L = RMS(y_t - y_{t-L}) for L = 1..RING;
the ratio min_{L>=2} d_L / d_1 is ~0 on a cycle of period L (its argmin is the period) and ~1 for smooth
drift or noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

RING = 16
COARSE = 8


class RecurrenceTracker:
    def __init__(self, shape: tuple[int, int, int], total_steps: int, steps: Sequence[int], device: torch.device):
        B, M, C = shape
        self.steps = set(steps)
        self.ring = torch.zeros(B, M, RING, C * COARSE * COARSE, device=device)
        self.start_late = max(2, (total_steps + 1) // 2)
        self.ratio_sum = torch.zeros(B, M, dtype=torch.float64, device=device)
        self.lag_sum = torch.zeros(B, M, dtype=torch.float64, device=device)
        self.n = torch.zeros(B, M, dtype=torch.float64, device=device)

    def _coarse(self, x: torch.Tensor) -> torch.Tensor:
        B, M, C, H, W = x.shape
        if H % COARSE == 0 and W % COARSE == 0:
            return F.avg_pool2d(x.reshape(B * M, C, H, W), H // COARSE).reshape(B, M, -1)
        return F.adaptive_avg_pool2d(x.reshape(B * M, C, H, W), COARSE).reshape(B, M, -1)

    def update(self, t: int, x: torch.Tensor, alive: torch.Tensor) -> None:
        """Record state t (t = 0 from ``start``); accumulate the ratio on the late half."""
        if t < self.start_late - RING:
            return  # too early to be looked back at
        y = self._coarse(x)
        if t >= self.start_late and t in self.steps:
            lags = torch.arange(1, min(RING, t) + 1, device=x.device)
            past = self.ring[:, :, (t - lags) % RING]  # [B, M, nL, D]
            d = (y[:, :, None] - past).square().mean(-1).sqrt()
            ratio, arg = (d[..., 1:] / (d[..., :1] + 1e-30)).min(-1)
            m = alive.view(-1, 1).expand_as(ratio)
            mf = m.to(torch.float64)
            self.ratio_sum += torch.where(m, ratio.double(), 0.0)
            self.lag_sum += torch.where(m, (arg + 2).double(), 0.0)
            self.n += mf
        self.ring[:, :, t % RING] = y

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ratio, lag) means over the late half, [B, M]; NaN without samples."""
        nan = torch.full_like(self.n, float("nan"))
        ok = self.n > 0
        return (
            torch.where(ok, self.ratio_sum / self.n.clamp_min(1), nan),
            torch.where(ok, self.lag_sum / self.n.clamp_min(1), nan),
        )

"""Isotropic power-spectrum statistics of periodic fields, and exact derivative energies via Parseval.

The power |FFT(z)|² of the standardised field is summed over integer shells k = round(|k⃗|) (k⃗ in cycles
per domain) with one ``index_add_`` over precomputed shell indices, so a step costs one rfft2 and O(N²)
work for all operators, realizations and channels. Half-plane columns 0 < kx < N/2 count twice (the rfft
drops their conjugates), so shell sums equal those of the full spectrum.
"""

from __future__ import annotations

import math

import torch

from spinlock.features.fields import TINY, Standardized, log10_floor

BAND_EDGES = (1 / 8, 1 / 4, 1 / 2)
"""Upper edges of bands 1-3 in units of k/k_nyq; band 4 holds everything above 1/2 (corners included)."""


class Spectrum:
    """Shell geometry for an N×N grid on ``device``; :meth:`stats` maps [..., C, N, N] → {name: [...]}."""

    def __init__(self, grid: int, device: torch.device):
        n = grid
        ky = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
        kx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
        shell = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long()
        weight = torch.full(shell.shape, 2.0, dtype=torch.float64)
        weight[:, 0] = 1.0
        if n % 2 == 0:
            weight[:, -1] = 1.0
        K = int(shell.max()) + 1
        self.knyq, self.K = n // 2, K
        self.shell = shell.flatten().to(device)
        self.weight = weight.flatten().float().to(device)
        # Parseval weights of the forward differences and the 5-point Laplacian:
        # |e^{2πik/N} - 1|² = 2 - 2cos(2πk/N) per axis, so mean(|∂⁺z|²) = Σ w |Z|² g / N⁴
        gx = (2.0 - 2.0 * torch.cos(2.0 * math.pi * kx / n))[None, :].expand(shell.shape)
        gy = (2.0 - 2.0 * torch.cos(2.0 * math.pi * ky / n))[:, None].expand(shell.shape)
        dw = torch.stack([(weight * g).flatten() for g in (gx, gy, (gx + gy) ** 2)], -1) / float(n) ** 4
        self.derivative_w = dw.float().to(device)  # [H·(W/2+1), 3]
        counts = torch.zeros(K, dtype=torch.float64).index_add_(0, shell.flatten(), weight.flatten())  # modes/shell
        k = torch.arange(K, dtype=torch.float64)
        self.k = k[1:].float().to(device)  # shells 1..K-1
        r = k[1:] / self.knyq
        edges = (0.0, *BAND_EDGES, math.inf)
        self.bands = torch.stack([(r > lo) & (r <= hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
        self.bands = self.bands.float().to(device)  # [4, K-1]
        self.inv_counts = (1.0 / counts[1 : self.knyq + 1]).float().to(device)
        # weighted least squares, weights = modes per shell (the variance of a shell mean ∝ 1/modes)
        lx = torch.log10(k[1 : self.knyq + 1])
        w = counts[1 : self.knyq + 1]
        lx = lx - (w * lx).sum() / w.sum()
        self.slope_w = (w * lx / (w * lx.square()).sum()).float().to(device)  # slope = Σ slope_w · y

    def stats(self, s: Standardized) -> dict[str, torch.Tensor]:
        """spectral.* and the spectrum-derived spatial.{log_grad, grad_ratio, lap_ratio, anisotropy}."""
        P = torch.fft.rfft2(s.z).abs().square().flatten(-2)  # [..., C, H·(W/2+1)]
        S = torch.zeros(*P.shape[:-1], self.K, dtype=P.dtype, device=P.device)
        S.index_add_(-1, self.shell, P * self.weight)  # shell sums, O(N²) (a dense shell matrix is O(N³))
        ex, ey, lap = (P @ self.derivative_w).unbind(-1)
        S1 = S[..., 1:]
        total = S1.sum(-1)
        inv = 1.0 / (total + TINY)
        out = {f"spectral.band{i + 1}": (S1 * self.bands[i]).sum(-1) * inv for i in range(4)}
        out["spectral.centroid"] = (S1 * self.k).sum(-1) * inv / self.knyq
        j = S1.argmax(-1, keepdim=True)
        nb = torch.cat([j - 1, j, j + 1], dim=-1)
        valid = (nb >= 0) & (nb < S1.shape[-1])
        sp = torch.where(valid, S1.gather(-1, nb.clamp(0, S1.shape[-1] - 1)), 0.0)
        kp = (nb + 1).to(S.dtype)
        out["spectral.peak"] = (sp * kp).sum(-1) / (sp.sum(-1) + TINY) / self.knyq
        p = S1 * inv[..., None]
        out["spectral.entropy"] = -(p * torch.log(p.clamp_min(TINY))).sum(-1) / math.log(S1.shape[-1])
        A = S[..., 1 : self.knyq + 1] * self.inv_counts
        A = A + 1e-10 * A.mean(-1, keepdim=True) + TINY
        logA = torch.log(A)
        out["spectral.slope"] = (logA * self.slope_w).sum(-1) / math.log(10.0)
        out["spectral.flatness"] = torch.exp(logA.mean(-1)) / A.mean(-1)
        grad = s.memo("grad_energy", lambda: (ex + ey) * s.scale.square())  # exact by Parseval
        out["spatial.log_grad"] = log10_floor(grad)
        out["spatial.grad_ratio"] = ex + ey
        out["spatial.lap_ratio"] = lap
        out["spatial.anisotropy"] = torch.log((ex + 1e-12) / (ey + 1e-12))
        return {k: v.mean(-1) for k, v in out.items()}

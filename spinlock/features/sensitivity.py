"""Finite-difference sensitivity probes of the deterministic operator f (``LiveOperator.apply``).

At a probe step the state x of realization 0 is perturbed along a unit-RMS normal direction δ drawn
from :class:`spinlock.rng.BatchRandom` keyed ``(seed, "sensitivity", operator)`` and spawned per step, so
an operator's probes depend on nothing but its index. One ``apply`` call evaluates f on the stack
[x, x + ε₁δ, x + ε₂δ] (as three "realizations"), with ε scaled by RMS(x) + 1e-6.

The evaluation is ``exact`` (float32, outside autocast) whatever ``simulation.precision``: ε = 1e-3 of
the RMS is below bf16 resolution (2⁻⁸ ≈ 3.9e-3), so under bf16 autocast the small perturbation is
rounded away or quantised and ``lipschitz`` came out 0.5–0.9 decades too high, ``nonlinearity`` ≈ −0.55
where float32 gives ≈ 0. The probes measure the operator, not the arithmetic it was rolled out in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spinlock.config.features import SensitivityConfig
from spinlock.features.fields import log10_floor
from spinlock.features.names import SENSITIVITY
from spinlock.rng import BatchRandom, derive_key
from spinlock.rollout.observer import LiveOperator

PROBE_STATS = ("lipschitz", "gain", "nonlinearity")
assert PROBE_STATS == tuple(s.name for s in SENSITIVITY.stats)  # column order of the probe output


class SensitivityProbe:
    def __init__(self, cfg: SensitivityConfig, seed: int, operator_indices: Sequence[int], device: torch.device):
        self.eps = (cfg.epsilon, cfg.large_epsilon)
        keys = [derive_key(seed, "sensitivity", int(op)) for op in operator_indices]
        self.rng = BatchRandom(keys, device)

    def probe(self, live: LiveOperator, step: int, x: torch.Tensor) -> torch.Tensor:
        """x [B, M, C, H, W] (finite) → [B, 1, 3] (lipschitz, gain, nonlinearity) of realization 0."""
        B, _, C, H, W = x.shape
        x0 = x[:, :1].float()
        d = self.rng.spawn(step).normal(C, H, W).float()
        d = d / d.square().mean(dim=(-3, -2, -1), keepdim=True).sqrt()
        rms = x0.square().mean(dim=(-4, -3, -2, -1)).sqrt()
        amp = [e * (rms + 1e-6) for e in self.eps]
        stack = torch.cat([x0] + [x0 + a.view(B, 1, 1, 1, 1) * d[:, None] for a in amp], dim=1)
        y = live.apply(stack, step + 1, exact=True).float()  # f(x_t) is what produces x_{t+1}
        rms_of = lambda v: v.square().mean(dim=(-3, -2, -1)).sqrt()  # noqa: E731
        lip = [log10_floor(rms_of(y[:, i + 1] - y[:, 0]) / a) for i, a in enumerate(amp)]
        gain = log10_floor(rms_of(y[:, 0]) / (rms + 1e-30))
        return torch.stack([lip[0], gain, lip[1] - lip[0]], dim=-1)[:, None]

"""Parameters every family shares: noise injection, its schedule, and the update policy.

For operator output y = f(x_t) at step t (t = 1..T is the index of the state being produced):

* noise ξ_t ~ unit-variance field per (operator, realization, step): ``gaussian``, ``laplace``,
  ``correlated`` (Gaussian smoothed by a periodic Gaussian kernel of std ``noise_correlation_length``
  cells, renormalised to unit variance) or ``multiplicative`` (Gaussian);
* schedule s(t): ``constant`` 1; ``annealing`` exp(-(t-1)/(τT)); ``periodic`` ½(1+cos(2π(t-1)/(τT)))
  with τ = ``noise_timescale``;
* ỹ = y + σ s(t) ξ (additive types) or ỹ = y (1 + σ s(t) ξ) (multiplicative), σ = ``noise_level``;
* update ``autoregressive`` x_{t+1} = ỹ; ``residual`` x_{t+1} = x_t + dt ỹ; ``convex``
  x_{t+1} = (1-α) x_t + α ỹ, with dt = α = ``step_size``.

``noise_correlation_length`` acts only for ``correlated`` noise, ``noise_timescale`` only for
non-constant schedules and ``step_size`` only for residual/convex policies (documented conditional
parameters; every other combination changes the trajectory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from spinlock.config.parameters import ChoiceSpec, ContinuousSpec, ParameterSpec
from spinlock.operators.base import CATEGORICAL, NUMERIC, ParamRule
from spinlock.rng import BatchRandom, derive_key

NOISE_TYPES = ("gaussian", "laplace", "correlated", "multiplicative")
SCHEDULES = ("constant", "annealing", "periodic")
POLICIES = ("autoregressive", "residual", "convex")

COMMON_RULES = {
    "noise_type": ParamRule(CATEGORICAL, allowed=list(NOISE_TYPES), doc="noise distribution / coupling"),
    "noise_level": ParamRule(NUMERIC, low=0.0, high=10.0, doc="noise std σ"),
    "noise_correlation_length": ParamRule(NUMERIC, low=0.0, high=1e3, doc="correlated noise length (cells)"),
    "noise_schedule": ParamRule(CATEGORICAL, allowed=list(SCHEDULES), doc="time modulation of σ"),
    "noise_timescale": ParamRule(NUMERIC, low=1e-3, high=10.0, doc="schedule timescale τ (fraction of T)"),
    "update_policy": ParamRule(CATEGORICAL, allowed=list(POLICIES), doc="state update rule"),
    "step_size": ParamRule(NUMERIC, low=1e-4, high=1.0, doc="dt (residual) or α (convex)"),
}


def default_dynamics_space() -> dict[str, ParameterSpec]:
    return {
        "noise_type": ChoiceSpec(type="choice", values=list(NOISE_TYPES)),
        "noise_level": ContinuousSpec(type="continuous", low=1e-3, high=0.3, scale="log"),
        "noise_correlation_length": ContinuousSpec(type="continuous", low=0.5, high=8.0, scale="log"),
        "noise_schedule": ChoiceSpec(type="choice", values=list(SCHEDULES)),
        "noise_timescale": ContinuousSpec(type="continuous", low=0.1, high=1.0),
        "update_policy": ChoiceSpec(type="choice", values=list(POLICIES)),
        "step_size": ContinuousSpec(type="continuous", low=0.05, high=1.0, scale="log"),
    }


def schedule_factor(kind: str, t: int, steps: int, timescale: float) -> float:
    """s(t) for the step producing state t (1-based)."""
    if kind == "constant":
        return 1.0
    phase = (t - 1) / (timescale * steps)
    if kind == "annealing":
        return math.exp(-phase)
    return 0.5 * (1.0 + math.cos(2.0 * math.pi * phase))


class BatchDynamics:
    """Noise and update policy for B operators × M realizations, vectorised."""

    def __init__(
        self, records: Sequence[dict[str, Any]], operator_indices: Sequence[int], realizations: int,
        seed: int, steps: int, channels: int, grid: int, device: torch.device,
    ):
        self.B, self.M, self.C, self.N, self.steps = len(records), realizations, channels, grid, steps
        self.device = device
        self.records = list(records)
        keys = [derive_key(seed, "noise", int(op), r) for op in operator_indices for r in range(realizations)]
        self.rng = BatchRandom(keys, device)
        f = lambda vals: torch.tensor(vals, dtype=torch.float32, device=device).view(-1, 1, 1, 1, 1)  # noqa: E731
        self.sigma = [float(r["noise_level"]) for r in records]
        self.types = [r["noise_type"] for r in records]
        self.mult = f([t == "multiplicative" for t in self.types])
        self.any_mult = "multiplicative" in self.types
        a, b = [], []
        for r in records:
            h = float(r["step_size"])
            pol = r["update_policy"]
            a.append({"autoregressive": 0.0, "residual": 1.0, "convex": 1.0 - h}[pol])
            b.append({"autoregressive": 1.0, "residual": h, "convex": h}[pol])
        self.a, self.b = f(a), f(b)
        lap_ops = [i for i, t in enumerate(self.types) if t == "laplace"]
        self.laplace_ops = torch.tensor(lap_ops, dtype=torch.long, device=device)
        self.laplace_rows = (
            torch.tensor([i * realizations + r for i in lap_ops for r in range(realizations)], device=device)
            if lap_ops else None
        )
        self.correlated = [i for i, t in enumerate(self.types) if t == "correlated"]
        if self.correlated:
            self.filters = self._filters([float(records[i]["noise_correlation_length"]) for i in self.correlated])

    def _filters(self, lengths: list[float]) -> torch.Tensor:
        """Unit-variance periodic Gaussian smoothing filters [K, 1, 1, N, N//2+1] (Parseval-normalised)."""
        n = self.N
        fy = torch.fft.fftfreq(n, device=self.device, dtype=torch.float64)
        fx = torch.fft.rfftfreq(n, device=self.device, dtype=torch.float64)
        f2 = fy[:, None] ** 2 + fx[None, :] ** 2
        ell = torch.tensor(lengths, dtype=torch.float64, device=self.device).view(-1, 1, 1)
        h = torch.exp(-2.0 * math.pi**2 * ell**2 * f2)  # FT of a unit-mass Gaussian of std ell cells
        fy_full = torch.fft.fftfreq(n, device=self.device, dtype=torch.float64)
        f2_full = fy_full[:, None] ** 2 + fy_full[None, :] ** 2
        power = torch.exp(-4.0 * math.pi**2 * ell**2 * f2_full).mean(dim=(-2, -1), keepdim=True)
        return (h / power.sqrt()).view(len(lengths), 1, 1, n, n // 2 + 1)

    def noise(self, t: int) -> torch.Tensor:
        """Scaled noise σ s(t) ξ_t, [B, M, C, H, W] float32."""
        rng = self.rng.spawn(t)
        shape = (self.B, self.M, self.C, self.N, self.N)
        xi = rng.normal(self.C, self.N, self.N).view(shape)
        if self.laplace_rows is not None:  # drawn only for Laplace operators' rows, at the same call index
            lap = rng.subset(self.laplace_rows).laplace(self.C, self.N, self.N)
            xi = xi.index_copy(0, self.laplace_ops, lap.view(-1, *shape[1:]))
        if self.correlated:
            idx = torch.tensor(self.correlated, device=self.device)
            sel = xi.index_select(0, idx).double()
            sm = torch.fft.irfft2(torch.fft.rfft2(sel) * self.filters, s=(self.N, self.N)).float()
            xi = xi.index_copy(0, idx, sm)
        scale = [
            s * schedule_factor(r["noise_schedule"], t, self.steps, float(r["noise_timescale"]))
            for s, r in zip(self.sigma, self.records, strict=True)
        ]
        return xi * torch.tensor(scale, dtype=torch.float32, device=self.device).view(-1, 1, 1, 1, 1)

    def update(self, x: torch.Tensor, fx: torch.Tensor, t: int) -> torch.Tensor:
        """x_{t} from x_{t-1} and f(x_{t-1}), [B, M, C, H, W]."""
        eta = self.noise(t)
        if self.any_mult:  # ỹ = y + η for additive rows, y (1 + η) = y + η·y for multiplicative rows
            eta = torch.where(self.mult > 0, eta * fx, eta)
        return torch.addcmul(self.a * x, self.b, fx + eta)

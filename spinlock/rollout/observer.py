"""The hook through which inline consumers (features, trajectory storage) see a rollout.

The engine never keeps a whole trajectory: it calls each observer once per step with the current state
of the batch, so features can be accumulated in O(1) memory in T.
"""

from __future__ import annotations

from typing import Protocol

import torch


class LiveOperator(Protocol):
    """What an observer may ask of the running operators (e.g. for sensitivity probes)."""

    def apply(self, x: torch.Tensor, step: int, exact: bool = False) -> torch.Tensor:
        """Deterministic operator output f(x) (no noise, no update policy), [B, M, C, H, W] → same.

        ``exact``: in float32 outside autocast, whatever ``simulation.precision`` (what the rollout uses
        otherwise), so measurements of f (sensitivity probes) do not depend on the rollout precision.
        """
        ...

    def advance(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Full noisy update x_{t+1} from x_t for every operator and realization, [B, M, C, H, W]."""
        ...


class Observer(Protocol):
    def start(self, x0: torch.Tensor, live: LiveOperator) -> None:
        """Called once with the initial state [B, M, C, H, W] (the IC repeated over realizations)."""
        ...

    def observe(self, step: int, x: torch.Tensor, alive: torch.Tensor) -> None:
        """Called after every step t = 1..T with the state [B, M, C, H, W] and ``alive`` [B] bool.

        Rows of operators that diverged or faulted (alive False) hold NaN from that step on.
        """
        ...

    def finish(self, status: torch.Tensor, diverged_step: torch.Tensor) -> None:
        """Called once at the end; ``status`` [B] int8 (0 ok, 1 diverged, 2 numerical fault: the IC or a noise
        draw was non-finite), ``diverged_step`` [B] int32 (step of divergence or fault, 0 for the IC; -1)."""
        ...

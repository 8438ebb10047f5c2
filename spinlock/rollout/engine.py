"""Batched stochastic rollout engine: B operators × M realizations × T steps in one loop.

Operators are grouped by their family's shape key and each group runs as one batched module (on CUDA
one grouped convolution per layer for the whole group; the family decides how to split it on CPU), and
noise, update and divergence checks are vectorised over the whole batch. Divergence is
checked per operator after every step; a diverged operator is frozen (its rows computed on zeros, shown
to observers as NaN) without touching the others.

Status: ``ok``; ``diverged`` when the state leaves the finite range or max |x| exceeds the threshold;
``fault`` when a non-finite value comes from outside the dynamics — the IC, the noise draw or a feature
(:func:`feature_faults`) — which is a bug to report, not behaviour to learn from. Attribution costs
nothing per step: the IC is checked once, and the noise of step t is re-drawn (it is a pure function of
its keys) only for a step at which some operator's state became non-finite.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spinlock.config.models import SimulationConfig
from spinlock.errors import SpinlockError
from spinlock.operators.dynamics import BatchDynamics
from spinlock.operators.registry import OperatorFamily
from spinlock.rollout.observer import Observer
from spinlock.storage.layout import STATUS_DIVERGED, STATUS_FAULT, STATUS_OK

log = logging.getLogger(__name__)


def _warn_fault(operator: int, step: int | str, source: str, detail: str) -> None:
    log.warning("numerical fault: operator %d, step %s, source %s: %s (status 'fault', not 'diverged')",
                operator, step, source, detail)


def resolve_device(kind: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if kind == "cuda" and not torch.cuda.is_available():
        raise SpinlockError("simulation.device is 'cuda' but torch.cuda.is_available() is False")
    if kind == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass
class RolloutResult:
    status: torch.Tensor  # [B] int8: STATUS_OK, STATUS_DIVERGED or STATUS_FAULT
    diverged_step: torch.Tensor  # [B] int32: step of divergence or fault (0: the IC), -1 when none


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``simulation.precision`` on ``device`` (None for fp32); a SpinlockError when this
    torch cannot autocast to it there. Generation also refuses reduced precision off CUDA
    (``generate.check_runnable``); the engine runs it under CPU autocast, which tests use to emulate CUDA."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is None:
        return None
    try:
        with warnings.catch_warnings():  # torch warns, then disables autocast, for an unsupported dtype
            warnings.simplefilter("ignore")
            with torch.autocast(device_type=device.type, dtype=dtype):
                ok = torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type) == dtype
    except (RuntimeError, ValueError) as e:  # device type without autocast
        raise SpinlockError(f"simulation.precision {precision!r}: torch has no autocast on {device} ({e})") from e
    if not ok:
        raise SpinlockError(
            f"simulation.precision {precision!r}: this torch ({torch.__version__}) does not autocast to {dtype}"
            f" on {device}; use fp32 there"
        )
    return dtype


class RolloutEngine:
    """Runs one batch of operators; implements :class:`spinlock.rollout.observer.LiveOperator`."""

    def __init__(
        self,
        family: OperatorFamily,
        records: Sequence[dict[str, Any]],
        operator_indices: Sequence[int],
        seed: int,
        sim: SimulationConfig,
        device: torch.device,
    ):
        self.sim, self.device, self.B = sim, device, len(records)
        self.autocast_dtype = autocast_dtype(sim.precision, device)
        groups: dict[tuple, list[int]] = {}
        for i, rec in enumerate(records):
            groups.setdefault(family.group_key(rec), []).append(i)
        self.groups = [
            (
                torch.tensor(members, device=device),
                family.build_group([records[i] for i in members], [operator_indices[i] for i in members],
                                   seed, sim.channels, device),
            )
            for _, members in sorted(groups.items(), key=lambda kv: kv[1][0])
        ]
        self.operator_indices = [int(i) for i in operator_indices]
        self.dynamics = BatchDynamics(
            records, operator_indices, sim.realizations, seed, sim.steps, sim.channels, sim.grid, device
        )

    def _autocast(self, exact: bool = False):
        if exact:  # also switches off an autocast region the caller may be in
            return torch.autocast(device_type=self.device.type, enabled=False)
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def apply(self, x: torch.Tensor, step: int, exact: bool = False) -> torch.Tensor:
        """Deterministic f(x) for every operator, [B, M, C, H, W] (``step`` unused by CNNs).

        ``exact``: evaluate in float32 outside autocast whatever ``simulation.precision`` (features).
        """
        with self._autocast(exact):
            if len(self.groups) == 1:  # members are 0..B-1 in order: no gather/scatter copies
                return self.groups[0][1].forward(x).to(x.dtype)
            out = torch.empty_like(x)
            for idx, group in self.groups:
                out[idx] = group.forward(x.index_select(0, idx)).to(x.dtype)
        return out

    def advance(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """x_step from x_{step-1}: operator, noise, update policy."""
        return self.dynamics.update(x, self.apply(x, step), step)

    def _noise_faults(self, rows: torch.Tensor, t: int) -> torch.Tensor:
        """[B] bool: ``rows`` whose noise draw of step t holds a non-finite value (re-drawn: a pure function
        of (seed, operator, realization, step), so equal to the draw the step used)."""
        eta = self.dynamics.noise(t)
        return rows & ~torch.isfinite(eta.reshape(self.B, -1)).all(dim=1)

    @torch.no_grad()
    def run(self, ic: torch.Tensor, observers: Sequence[Observer] = ()) -> RolloutResult:
        """Roll out from ``ic`` [B, C, H, W]; observers see every state, the engine keeps only the last."""
        B, M = self.B, self.sim.realizations
        # Decaying operators reach subnormal floats, which are ~100x slower on x86 CPUs (measured: a
        # 64-operator quickstart shard went from 93 s to 32 s). Flushing them to zero is deterministic.
        torch.set_flush_denormal(True)
        if ic.shape != (B, self.sim.channels, self.sim.grid, self.sim.grid):
            raise ValueError(f"ic shape {tuple(ic.shape)} does not match batch/simulation config")
        view = (B, 1, 1, 1, 1)
        zero = torch.zeros((), device=self.device)
        x = ic.to(self.device, torch.float32)[:, None].expand(B, M, *ic.shape[1:]).contiguous()
        alive = torch.isfinite(x.reshape(B, -1)).all(dim=1)
        status = torch.where(alive, STATUS_OK, STATUS_FAULT).to(torch.int8)
        diverged_step = torch.where(alive, -1, 0).to(torch.int32)
        if not bool(alive.all()):  # an IC fault: the operator never runs (observers see zeros at step 0)
            for b in torch.nonzero(~alive).flatten().tolist():
                _warn_fault(self.operator_indices[b], 0, "IC", "non-finite initial condition")
            x = torch.where(alive.view(view), x, zero)
        for obs in observers:
            obs.start(x, self)
        nan = torch.tensor(float("nan"), device=self.device)
        for t in range(1, self.sim.steps + 1):
            x = self.advance(x, t)
            # amax propagates NaN and NaN <= threshold is False, so one reduction flags NaN, Inf and blow-up
            peak = x.reshape(B, -1).abs().amax(dim=1)
            newly = alive & ~(peak <= self.sim.divergence_threshold)
            if bool(newly.any()):
                nonfinite = newly & ~torch.isfinite(peak)
                fault = self._noise_faults(nonfinite, t) if bool(nonfinite.any()) else torch.zeros_like(newly)
                status[newly] = torch.where(fault, STATUS_FAULT, STATUS_DIVERGED).to(torch.int8)[newly]
                diverged_step[newly] = t
                alive &= ~newly
                for b in torch.nonzero(fault).flatten().tolist():
                    _warn_fault(self.operator_indices[b], t, "noise", "non-finite noise draw")
            if not bool(alive.all()):
                shown = torch.where(alive.view(view), x, nan)
                x = torch.where(alive.view(view), x, zero)
            else:
                shown = x
            for obs in observers:
                obs.observe(t, shown, alive)
        for obs in observers:
            obs.finish(status, diverged_step)
        return RolloutResult(status.cpu(), diverged_step.cpu())


ALWAYS_DEFINED = ("architecture",)
"""Feature families defined for every operator: NaN there is a fault. Elsewhere NaN means undefined for the
run (docs/features.md: C = 1, M = 1, too few samples, a series without fluctuation, ...), but ±inf is never
a value of any feature."""


def feature_faults(blocks: Mapping[str, np.ndarray], status: np.ndarray, operator_indices: Sequence[int]) -> np.ndarray:
    """Mark ok operators whose features hold a value no feature can take (±inf anywhere, NaN in an
    :data:`ALWAYS_DEFINED` family) as ``fault``, in place; logs one WARNING per operator. Returns [B] bool.

    ``blocks``: family → values [B, D] or [B, T', D]. Diverged operators are left alone (their features
    are NaN or cut at the divergence step by definition). The status step stays -1: no rollout step failed.
    """
    bad = np.zeros(len(status), dtype=bool)
    where: dict[int, list[str]] = {}
    for fam, values in blocks.items():
        v = np.asarray(values).reshape(len(status), -1)
        hit = np.isinf(v).any(axis=1) | (np.isnan(v).any(axis=1) if fam in ALWAYS_DEFINED else False)
        hit &= status == STATUS_OK
        for b in np.flatnonzero(hit):
            where.setdefault(int(b), []).append(fam)
        bad |= hit
    status[bad] = STATUS_FAULT
    for b, fams in sorted(where.items()):
        _warn_fault(int(operator_indices[b]), "-", "feature",
                    f"non-finite value in features/{', features/'.join(fams)}")
    return bad

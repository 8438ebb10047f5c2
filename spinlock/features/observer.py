"""SUMMARY and TEMPORAL features computed inline during a rollout (an engine Observer).

At its sampled steps (``spinlock.features.schedule``) the observer computes the registry's per-step
statistics on the state ``[B, M, C, H, W]`` and feeds them to streaming pools; at the history steps it
records a few scalars for the series and growth features; it writes the TEMPORAL curves at their steps. It keeps one
previous state (for lag-1 statistics), a 16-step ring of 8×8 coarse states and O(B·M·history) scalars:
memory is O(1) in the fields' history.

Diverged operators (``alive`` False) are zeroed before any computation and masked out of every
accumulator, so their statistics cover the pre-divergence steps only (pools without such a sample are
NaN) and the other rows are unaffected. The dataset's ``/status`` and ``/status_step`` flag them (a flag
column here would be constant over the non-diverged operators the tokenizer trains on). Everything runs
on ``device`` (CUDA when the engine is on CUDA) except component labelling, in float32 with float64
pools, outside any autocast region, whatever ``simulation.precision`` (the engine's state is float32;
only its operator evaluations are autocast, and the sensitivity probes ask for exact ones).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from spinlock.config.models import RunConfig
from spinlock.features import fields
from spinlock.features.block import FeatureBlock, check_names
from spinlock.features.morphology import morphology_stats
from spinlock.features.names import (
    POOLS,
    SERIES,
    effective_stride,
    enabled,
    spread_targets,
    step_stats,
    summary_names,
    temporal_names,
    temporal_steps,
)
from spinlock.features.pooling import DriftPool, TimePool
from spinlock.features.recurrence import RecurrenceTracker
from spinlock.features.schedule import (
    field_compute_steps,
    field_steps,
    history_steps,
    history_stride,
    probe_steps,
    step_compute_steps,
    step_steps,
)
from spinlock.features.sensitivity import SensitivityProbe
from spinlock.features.series import ScalarHistory, series_asymmetry, series_features, window_slopes
from spinlock.features.spectral import Spectrum
from spinlock.rollout.observer import LiveOperator

OP_LEVEL = ("spread.field",)
"""Per-step statistics defined per operator (across realizations); pooled from realization 0's copy."""
H_ENERGY, H_MEAN, H_LNSTD, H_CHANNELS = 0, 1, 2, 3
"""Scalar-history layout: ln RMS, spatial-channel mean, ln σ, then per-channel ln RMS (C series)."""
assert SERIES == ("energy", "mean")  # SERIES[i] is history series i
LAG_KEYS = (
    "dynamics.field_acf1", "dynamics.step_change", "causality.lag_cross", "causality.asym_net",
    "causality.asym_abs", "causality.asym_max",
)


def _fp32(method: Callable) -> Callable:
    """Run an observer method with autocast off, so no feature reduction runs in reduced precision."""

    @functools.wraps(method)
    def wrapper(self: FeatureObserver, *args, **kwargs):
        with torch.autocast(device_type=self.device.type, enabled=False):
            return method(self, *args, **kwargs)

    return wrapper


def _realization_mean(v: torch.Tensor) -> torch.Tensor:
    return v.mean(dim=1)


def _realization_std(v: torch.Tensor) -> torch.Tensor:
    if v.shape[1] < 2:
        return torch.full_like(v[:, 0], float("nan"))
    return v.std(dim=1)


class FeatureObserver:
    """Observer protocol implementation; read :meth:`summary` and :meth:`temporal` after the rollout."""

    def __init__(self, cfg: RunConfig, operator_indices: Sequence[int], device: torch.device):
        self.cfg, self.fc = cfg, cfg.features
        self.ops = [int(i) for i in operator_indices]
        self.device = torch.device(device)
        sim = cfg.simulation
        self.T, self.M, self.C, self.N = sim.steps, sim.realizations, sim.channels, sim.grid
        self.cats = {c.name for c in enabled(self.fc)}
        stats = step_stats(self.fc)
        self.step_keys = [k for k, s in stats if s.schedule == "step"]
        self.field_keys = [k for k, s in stats if s.schedule == "field" and not k.startswith("invariants.")]
        self.inv_keys = [k for k, s in stats if k.startswith("invariants.")]
        self.probe_keys = [k for k, s in stats if s.schedule == "probe"]
        self.summary_names = summary_names(self.fc)
        self.temporal_names = temporal_names(self.fc)
        self.tsteps = temporal_steps(cfg)
        self.tindex = {t: i for i, t in enumerate(self.tsteps)}
        self.step_pool_set = set(step_steps(cfg))
        self.step_compute = step_compute_steps(cfg)
        self.field_pool_steps = field_steps(cfg)
        self.field_pool_set = set(self.field_pool_steps)
        self.field_compute = field_compute_steps(cfg)
        self.probe_list = probe_steps(cfg)
        self.probe_set = set(self.probe_list)
        self.hist_stride = history_stride(cfg)
        self.need_lag = bool(self.cats & {"dynamics", "causality"})
        self.need_history = bool(self.cats & {"dynamics", "causality", "spread"})
        # the spectrum also gives the spatial gradient/Laplacian energies (Parseval)
        self.spectrum = Spectrum(self.N, self.device) if self.cats & {"spatial", "spectral"} else None
        self.probe = (
            SensitivityProbe(self.fc.sensitivity, cfg.seed, self.ops, self.device)
            if "sensitivity" in self.cats
            else None
        )
        self._summary: FeatureBlock | None = None
        self._temporal: FeatureBlock | None = None

    # ------------------------------------------------------------------ per-step statistics
    def _step_stats(self, st: fields.Standardized, prev: fields.Standardized | None) -> dict[str, torch.Tensor]:
        """Step statistics, each [B, M] (operator-level ones broadcast over realizations)."""
        out: dict[str, torch.Tensor] = {}
        lead = st.mu.shape[:-1]
        if "spatial" in self.cats:
            out.update(fields.spatial_step(st))
        if "cross" in self.cats:
            out.update(fields.cross_step(st))
        if self.need_lag:
            if prev is None:  # step 0: nothing to lag against
                nan = torch.full(lead, float("nan"), device=self.device)
                lag = dict.fromkeys(LAG_KEYS, nan)
            else:
                lag = fields.lag_stats(prev, st)
                lag["dynamics.step_change"] = fields.step_change(prev, st)
            out.update({k: v for k, v in lag.items() if k.split(".")[0] in self.cats})
        if "spread" in self.cats:
            if prev is None:  # realizations start from the same IC
                out["spread.field"] = torch.full(lead, float("nan"), device=self.device)
            else:
                out["spread.field"] = fields.realization_spread(st)[:, None].expand(lead)
        return out

    def _field(self, st: fields.Standardized) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "spatial" in self.cats:
            out.update(fields.spatial_field(st))
        if self.spectrum is not None:
            out.update({k: v for k, v in self.spectrum.stats(st).items() if k.split(".")[0] in self.cats})
        if "cross" in self.cats:
            out.update(fields.cross_field(st))
        if "morphology" in self.cats:
            out.update(morphology_stats(st, self.fc.morphology_threshold))
        if "invariants" in self.cats:
            out.update(fields.invariants(st))
        return out

    # ------------------------------------------------------------------ Observer protocol
    @_fp32
    def start(self, x0: torch.Tensor, live: LiveOperator) -> None:
        B, M, C, H, W = x0.shape
        if B != len(self.ops) or (M, C, H, W) != (self.M, self.C, self.N, self.N):
            raise ValueError(
                f"state shape {tuple(x0.shape)} does not match {len(self.ops)} operators and the simulation"
                f" config (M={self.M}, C={self.C}, grid={self.N})"
            )
        dev, T = self.device, self.T
        self.live = live
        self._summary = self._temporal = None
        self.pool_step = TimePool(step_steps(self.cfg), T, (B, M, len(self.step_keys)), dev)
        self.pool_field = TimePool(self.field_pool_steps, T, (B, M, len(self.field_keys)), dev)
        self.pool_probe = TimePool(self.probe_list, T, (B, 1, len(self.probe_keys)), dev)
        self.drift = DriftPool((B, M, len(self.inv_keys)), dev)
        self.temporal_buf = torch.full((B, len(self.tsteps), len(self.temporal_names)), float("nan"), device=dev)
        self.history = ScalarHistory(history_steps(self.cfg), (B, M, H_CHANNELS + C), dev)
        self._is_log = torch.tensor([True, False] + [True] * (1 + C), device=dev)
        self.recurrence = (
            RecurrenceTracker((B, M, C), T, self.field_pool_steps, dev) if "dynamics" in self.cats else None
        )
        self.prev = None
        self._step(0, x0.to(dev, torch.float32), torch.ones(B, dtype=torch.bool, device=dev))

    @_fp32
    def observe(self, step: int, x: torch.Tensor, alive: torch.Tensor) -> None:
        alive = alive.to(self.device)
        x = x.to(self.device, torch.float32)
        if not bool(alive.all()):  # dead rows hold NaN: zero them so no kernel sees a NaN
            x = torch.where(alive.view(-1, 1, 1, 1, 1), x, 0.0)
        self._step(step, x, alive)

    def _step(self, t: int, x: torch.Tensor, alive: torch.Tensor) -> None:
        st = fields.standardize(x)  # moments only; z is computed if a statistic needs it
        vals: dict[str, torch.Tensor] = {}
        if t == 0 or t in self.step_compute:
            vals.update(self._step_stats(st, self.prev))
        if t == 0 or t in self.field_compute:
            vals.update(self._field(st))
        stack = lambda keys: torch.stack([vals[k] for k in keys], dim=-1)  # noqa: E731
        if t > 0:
            if t in self.step_pool_set and self.step_keys:
                self.pool_step.update(t, stack(self.step_keys), alive)
            if t in self.field_pool_set and self.field_keys:
                self.pool_field.update(t, stack(self.field_keys), alive)
            if t in self.field_pool_set and self.inv_keys:
                self.drift.update(stack(self.inv_keys), alive)
        elif self.inv_keys:
            self.drift.start(stack(self.inv_keys))
        if t in self.tindex and self.temporal_names:
            i = self.tindex[t]
            cur = stack(self.temporal_names).mean(dim=1)
            self.temporal_buf[:, i] = torch.where(alive[:, None], cur, self.temporal_buf[:, i])
        if self.probe is not None and t in self.probe_set:
            self.pool_probe.update(t, self.probe.probe(self.live, t, x), alive)
        if self.need_history and t in self.history.index:
            # layout H_*: mean square, mean, variance (channel means), per-channel mean square
            sq = torch.cat([st.msq.mean(-1, keepdim=True), st.mu.mean(-1, keepdim=True),
                            st.var.mean(-1, keepdim=True), st.msq], -1)
            logs = 0.5 * torch.log(sq.clamp_min(fields.TINY))  # ln RMS / ln σ
            self.history.record(t, torch.where(self._is_log, logs, sq), alive)
        if self.recurrence is not None:
            self.recurrence.update(t, x, alive)
        self.prev = st

    @_fp32
    def finish(self, status: torch.Tensor, diverged_step: torch.Tensor) -> None:
        out: dict[str, torch.Tensor] = {}
        spread_of: dict[str, torch.Tensor] = {}  # std over realizations of each statistic's time mean
        for pool, keys in ((self.pool_step, self.step_keys), (self.pool_field, self.field_keys),
                           (self.pool_probe, self.probe_keys)):
            if not keys:
                continue
            res = pool.result()
            means = {p: _realization_mean(v) for p, v in res.items()}  # [B, F] per pool, one op each
            spread = _realization_std(res["mean"])
            for j, k in enumerate(keys):
                for p in POOLS:
                    out[f"{k}.{p}"] = res[p][:, 0, j] if k in OP_LEVEL else means[p][:, j]
                spread_of[k] = spread[:, j]
        if self.inv_keys:
            means = {p: _realization_mean(v) for p, v in self.drift.result().items()}
            for j, k in enumerate(self.inv_keys):
                for p, v in means.items():
                    out[f"{k}.{p}"] = v[:, j]
        if self.need_history:
            hist = self.history.buf  # [B, M, H_CHANNELS + C, L]
            T = self.T
            steps = torch.tensor(history_steps(self.cfg), device=hist.device)
            windows = [(0, T), (0, T / 2), (T / 2, T)]
            rms_slope = window_slopes(hist[:, :, H_ENERGY], steps, windows)  # [B, M, 3]
            if "dynamics" in self.cats:
                std_slope = window_slopes(hist[:, :, H_LNSTD], steps, windows)
                for i, w in enumerate(("all", "early", "late")):
                    out[f"dynamics.growth_rms.{w}"] = _realization_mean(rms_slope[..., i])
                    out[f"dynamics.growth_std.{w}"] = _realization_mean(std_slope[..., i])
            if "spread" in self.cats:
                out["spread.growth_rms.std"] = _realization_std(rms_slope[..., 0])
            for i, name in enumerate(SERIES):
                for k, v in series_features(hist[:, :, i], self.hist_stride, self.T).items():
                    if k == "irreversibility":
                        if "causality" in self.cats:
                            out[f"causality.{name}.irreversibility"] = _realization_mean(v)
                    elif "dynamics" in self.cats:
                        out[f"dynamics.{name}.{k}"] = _realization_mean(v)
            if "causality" in self.cats:
                for k, v in series_asymmetry(hist[:, :, H_CHANNELS:]).items():
                    out[f"causality.series_asym.lag{k}"] = _realization_mean(v)
        if self.recurrence is not None:
            ratio, lag = self.recurrence.result()
            out["dynamics.recurrence.ratio"] = _realization_mean(ratio)
            out["dynamics.recurrence.lag"] = _realization_mean(lag)
        if "spread" in self.cats:
            for k in spread_targets(self.fc):
                out[f"spread.{k.replace('.', '_')}.std"] = spread_of[k]
        if set(out) != set(self.summary_names):
            check_names("summary", tuple(out), self.summary_names)
        values = torch.stack([out[n].double() for n in self.summary_names], dim=-1)
        self._summary = FeatureBlock(values.float().cpu().numpy(), self.summary_names, {})
        self._temporal = FeatureBlock(
            self.temporal_buf.cpu().numpy().astype(np.float32),
            self.temporal_names,
            {"stride": effective_stride(self.fc.temporal_stride, self.T), "steps": list(self.tsteps)},
        )
        self.live = None
        self.prev = None

    # ------------------------------------------------------------------ results
    def summary(self) -> FeatureBlock:
        """SUMMARY block [B, D_summary] (after ``finish``)."""
        if self._summary is None:
            raise RuntimeError("FeatureObserver.summary() called before the rollout finished")
        return self._summary

    def temporal(self) -> FeatureBlock:
        """TEMPORAL block [B, T', D_temporal] at steps ``temporal_steps(cfg)`` (after ``finish``)."""
        if self._temporal is None:
            raise RuntimeError("FeatureObserver.temporal() called before the rollout finished")
        return self._temporal

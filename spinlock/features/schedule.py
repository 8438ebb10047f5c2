"""When each kind of statistic is sampled during a rollout of T steps (a pure function of the config).

``step`` statistics are sampled at the multiples of ``features.step_stride`` plus T; ``field``
statistics (spectra, quantiles, histograms, morphology, multi-scale invariants) at the multiples of
``features.field_stride`` plus T (every stride capped at ⌊T/4⌋, ``names.effective_stride``, so a short
run still has >= 4 samples); sensitivity probes at ``features.sensitivity.probes`` steps spread
evenly over 0..T (both ends included); the scalar history at 0, h,
2h, ... <= T with h chosen so at most ``features.history_length`` samples are kept. Statistics are
additionally *computed* (not pooled) at the TEMPORAL steps, so SUMMARY never depends on
``temporal_stride``.
"""

from __future__ import annotations

import math

from spinlock.config.models import RunConfig
from spinlock.features.names import effective_stride, temporal_steps


def _multiples(stride: int, T: int) -> list[int]:
    s = effective_stride(stride, T)
    return sorted(set(range(s, T + 1, s)) | {T})


def step_steps(cfg: RunConfig) -> list[int]:
    return _multiples(cfg.features.step_stride, cfg.simulation.steps)


def field_steps(cfg: RunConfig) -> list[int]:
    return _multiples(cfg.features.field_stride, cfg.simulation.steps)


def _with_temporal(cfg: RunConfig, steps: list[int]) -> set[int]:
    return set(steps) | {t for t in temporal_steps(cfg) if t > 0}


def step_compute_steps(cfg: RunConfig) -> set[int]:
    """Steps >= 1 at which step statistics are evaluated (SUMMARY samples and TEMPORAL steps)."""
    return _with_temporal(cfg, step_steps(cfg))


def field_compute_steps(cfg: RunConfig) -> set[int]:
    """Steps >= 1 at which field statistics are evaluated (SUMMARY samples and TEMPORAL steps)."""
    return _with_temporal(cfg, field_steps(cfg))


def probe_steps(cfg: RunConfig) -> list[int]:
    """⌊i·T/(n − 1)⌋ for i = 0..n−1, n = ``features.sensitivity.probes`` (distinct: fewer when T + 1 < n)."""
    n, T = cfg.features.sensitivity.probes, cfg.simulation.steps
    return sorted({i * T // (n - 1) for i in range(n)})


def history_stride(cfg: RunConfig) -> int:
    return max(1, math.ceil((cfg.simulation.steps + 1) / cfg.features.history_length))


def history_steps(cfg: RunConfig) -> list[int]:
    return list(range(0, cfg.simulation.steps + 1, history_stride(cfg)))

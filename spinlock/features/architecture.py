"""ARCHITECTURE features: the operator's normalised parameters plus derived quantities.

Continuous parameters map to [0, 1] on their own (linear or log) scale, integers to [0, 1], booleans to
0/1, choices to one column per value (one-hot). Fixed parameters are constant and have no column. The
derived block holds the family's ``DERIVED_KEYS`` and dynamics quantities computed here (effective
noise, update-policy weights, active correlation length, end-to-end gain). The effective noise is the
noise that enters the *state* per step: the update x_{t+1} = a x_t + b ỹ scales the noise in ỹ by b
(dt for residual, α for convex updates), which σ alone overstated by up to 1/h = 20× on the default space.
"""

from __future__ import annotations

import math

import numpy as np

from spinlock.config.models import RunConfig
from spinlock.config.parameters import BooleanSpec, ChoiceSpec, ContinuousSpec, IntegerSpec
from spinlock.features.block import FeatureBlock
from spinlock.features.names import EXTRA_DERIVED, feature_names
from spinlock.operators.dynamics import schedule_factor
from spinlock.operators.registry import DERIVED_KEYS, OperatorFamily


def _extra_derived(record: dict, derived: dict[str, float], steps: int) -> dict[str, float]:
    sigma = float(record["noise_level"])
    sched = np.mean([
        schedule_factor(record["noise_schedule"], t, steps, float(record["noise_timescale"]))
        for t in range(1, steps + 1)
    ])
    h = float(record["step_size"])
    policy = record["update_policy"]
    a = {"autoregressive": 0.0, "residual": 1.0, "convex": 1.0 - h}[policy]
    b = {"autoregressive": 1.0, "residual": h, "convex": h}[policy]
    corr = float(record["noise_correlation_length"]) if record["noise_type"] == "correlated" else 0.0
    gain = max(float(derived["weight_gain"]), 1e-12)
    out = {
        "noise_effective": math.log10(max(b * sigma * float(sched), 1e-12)),  # what reaches the state
        "memory": a,
        "step_effective": b,
        "noise_corr_effective": corr,
        "gain_depth": float(derived["effective_depth"]) * math.log10(gain),
    }
    assert tuple(out) == tuple(k for k, _ in EXTRA_DERIVED)
    return out


def _param_columns(spec, v: np.ndarray) -> np.ndarray:
    """Mapped values [B] (choices as index) → normalised columns [B, k]."""
    if isinstance(spec, ChoiceSpec):
        idx = v.astype(np.int64)
        if idx.min() < 0 or idx.max() >= len(spec.values):
            raise ValueError(f"choice index out of range [0, {len(spec.values)}): {sorted(set(idx.tolist()))}")
        return np.eye(len(spec.values))[idx]
    if isinstance(spec, BooleanSpec):
        return v[:, None].astype(np.float64)
    if isinstance(spec, IntegerSpec):
        return ((v - spec.low) / (spec.high - spec.low))[:, None]
    assert isinstance(spec, ContinuousSpec)
    if spec.scale == "log":
        lo, hi = math.log(spec.low), math.log(spec.high)
        return ((np.log(v) - lo) / (hi - lo))[:, None]
    return ((v - spec.low) / (spec.high - spec.low))[:, None]


def extract_architecture(cfg: RunConfig, values: np.ndarray, derived: list[dict[str, float]]) -> FeatureBlock:
    """values [B, P] mapped parameters in ``cfg.parameters`` order; derived: ``family.derived`` per row."""
    values = np.asarray(values, dtype=np.float64)
    P = len(cfg.parameters)
    if values.ndim != 2 or values.shape[1] != P:
        raise ValueError(f"parameter values must be [B, {P}] in cfg.parameters order, got {values.shape}")
    if len(derived) != values.shape[0]:
        raise ValueError(f"got {len(derived)} derived dicts for {values.shape[0]} operators")
    for i, d in enumerate(derived):
        if set(d) != set(DERIVED_KEYS):
            raise ValueError(f"derived[{i}] keys {sorted(d)} != DERIVED_KEYS {sorted(DERIVED_KEYS)}")
    cols = [
        _param_columns(spec, values[:, j])
        for j, spec in enumerate(cfg.parameters.values())
        if not spec.is_fixed
    ]
    extra = []
    for row, d in zip(values, derived, strict=True):
        rec = OperatorFamily.decode(cfg.parameters, row)
        e = _extra_derived(rec, d, cfg.simulation.steps)
        extra.append([float(d[k]) for k in DERIVED_KEYS] + list(e.values()))
    out = np.concatenate(cols + [np.asarray(extra, dtype=np.float64).reshape(len(values), -1)], axis=1)
    names = feature_names(cfg)["architecture"]
    if out.shape[1] != len(names):
        raise RuntimeError(f"computed {out.shape[1]} architecture columns, the name registry has {len(names)}")
    return FeatureBlock(out.astype(np.float32), names, {})

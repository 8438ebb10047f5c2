"""FeatureObserver on analytic trajectories (no engine): growth, periodicity, causality, sensitivity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock.config import config_from_dict
from spinlock.features import FeatureObserver, feature_names


def _cfg(steps: int, channels: int = 2, realizations: int = 2, grid: int = 16, **features):
    return config_from_dict({
        "simulation": {"num_operators": 4, "grid": grid, "channels": channels, "steps": steps,
                       "realizations": realizations, "batch_operators": 2},
        "sharding": {"operators_per_shard": 2},
        "storage": {"trajectories": {"stride": 1}},
        "features": features,
    })


class ScaledLive:
    """f(x) = gain · x: Lipschitz constant and gain both equal ``gain``, no nonlinearity."""

    def __init__(self, gain: float):
        self.gain = gain

    def apply(self, x: torch.Tensor, step: int, exact: bool = False) -> torch.Tensor:
        return self.gain * x

    def advance(self, x: torch.Tensor, step: int) -> torch.Tensor:  # pragma: no cover - protocol only
        return self.apply(x, step)


def _smooth_field(rng: np.random.Generator, shape) -> torch.Tensor:
    x = torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32)
    n = shape[-1]
    k = torch.fft.rfftfreq(n, 1 / n)
    return torch.fft.irfft2(torch.fft.rfft2(x) * torch.exp(-k / 3.0), s=(n, n))


def _drive(cfg, states, live=None, dead_from: dict[int, int] | None = None):
    """Feed states [T+1] of [B, M, C, H, W]; rows in ``dead_from`` turn NaN from that step on."""
    B = states[0].shape[0]
    obs = FeatureObserver(cfg, list(range(B)), torch.device("cpu"))
    obs.start(states[0], live or ScaledLive(1.0))
    alive = torch.ones(B, dtype=torch.bool)
    dead_from = dead_from or {}
    for t in range(1, len(states)):
        x = states[t].clone()
        for b, s in dead_from.items():
            if t >= s:
                alive[b] = False
                x[b] = float("nan")
        obs.observe(t, x, alive.clone())
    status = torch.tensor([1 if b in dead_from else 0 for b in range(B)], dtype=torch.int8)
    step = torch.tensor([dead_from.get(b, -1) for b in range(B)], dtype=torch.int32)
    obs.finish(status, step)
    summary = obs.summary()
    return {n: summary.values[:, j] for j, n in enumerate(summary.names)}, obs


def test_exponential_decay_growth_rate_and_linear_sensitivity():
    T, r = 16, 0.8
    cfg = _cfg(T, field_stride=4, temporal_stride=4, sensitivity={"probes": 5})
    x0 = _smooth_field(np.random.default_rng(0), (3, 1, 2, 16, 16)).expand(3, 2, 2, 16, 16)
    v, obs = _drive(cfg, [x0 * r**t for t in range(T + 1)], ScaledLive(0.5))
    for w in ("all", "early", "late"):
        np.testing.assert_allclose(v[f"dynamics.growth_rms.{w}"], math.log(r), atol=1e-5)
        np.testing.assert_allclose(v[f"dynamics.growth_std.{w}"], math.log(r), atol=1e-5)
    np.testing.assert_allclose(v["dynamics.step_change.mean"], math.log10(1 - r), atol=1e-4)
    np.testing.assert_allclose(v["dynamics.step_change.std"], 0.0, atol=1e-4)
    np.testing.assert_allclose(v["dynamics.field_acf1.mean"], 1.0, atol=1e-5)
    # shape statistics do not change under scaling; log magnitudes move by log10 r per step
    np.testing.assert_allclose(v["spatial.skew.std"], 0.0, atol=1e-4)
    np.testing.assert_allclose(v["spatial.kurt.trend"], 0.0, atol=1e-3)
    np.testing.assert_allclose(v["spatial.log_std.trend"], T * math.log10(r), atol=1e-4)
    np.testing.assert_allclose(v["invariants.l2_s1.drift"], T * math.log10(r), atol=1e-4)
    np.testing.assert_allclose(v["invariants.entropy_s2.drift"], 0.0, atol=1e-6)
    np.testing.assert_allclose(v["sensitivity.lipschitz.mean"], math.log10(0.5), atol=1e-3)
    np.testing.assert_allclose(v["sensitivity.gain.mean"], math.log10(0.5), atol=1e-5)
    np.testing.assert_allclose(v["sensitivity.nonlinearity.mean"], 0.0, atol=1e-3)
    # the energy series is exactly linear: no fluctuation to analyse
    assert np.isnan(v["dynamics.energy.acf1"]).all()
    assert np.isnan(v["dynamics.energy.dom_freq"]).all()
    # identical realizations: zero spread (floored log), the same time means
    np.testing.assert_allclose(v["spread.spatial_skew.std"], 0.0, atol=1e-6)
    temporal = obs.temporal()
    assert temporal.values.shape == (3, T // 4 + 1, len(feature_names(cfg)["temporal"]))
    assert temporal.attrs == {"stride": 4, "steps": [0, 4, 8, 12, 16]}
    j = temporal.names.index("spatial.log_std")
    np.testing.assert_allclose(np.diff(temporal.values[:, :, j], axis=1), 4 * math.log10(r), atol=1e-4)


@pytest.mark.parametrize("period", [8, 5])
def test_periodic_energy_gives_dominant_frequency(period):
    T = 63  # 64 samples of the history including step 0
    cfg = _cfg(T)
    x0 = _smooth_field(np.random.default_rng(1), (2, 2, 2, 16, 16))
    states = [x0 * (1.0 + 0.5 * math.sin(2 * math.pi * t / period)) for t in range(T + 1)]
    v, _ = _drive(cfg, states)
    np.testing.assert_allclose(v["dynamics.energy.dom_freq"], 1 / period, atol=0.01)
    np.testing.assert_allclose(v["dynamics.mean.dom_freq"], 1 / period, atol=0.01)
    assert (v["dynamics.energy.dom_power"] > 0.7).all()
    # an oscillation has autocorrelation ≈ cos(2π k / P) at lag k
    np.testing.assert_allclose(v["dynamics.energy.acf1"], math.cos(2 * math.pi / period), atol=0.15)


def test_travelling_wave_recurs_at_its_period():
    T, period = 40, 8
    cfg = _cfg(T)
    x0 = _smooth_field(np.random.default_rng(5), (2, 2, 2, 16, 16))
    # shift by 2 cells per step on a 16-cell domain: the state recurs after exactly 8 steps
    v, _ = _drive(cfg, [torch.roll(x0, 2 * t, dims=-1) for t in range(T + 1)])
    assert (v["dynamics.recurrence.ratio"] < 1e-4).all()
    np.testing.assert_array_equal(v["dynamics.recurrence.lag"], period)
    np.testing.assert_allclose(v["dynamics.growth_rms.all"], 0.0, atol=1e-6)  # energy is conserved
    np.testing.assert_allclose(v["invariants.l2_s1.drift"], 0.0, atol=1e-6)


def test_known_lag_gives_causality_sign():
    T = 48
    cfg = _cfg(T, channels=2, realizations=1)
    rng = np.random.default_rng(2)
    driver = [float(a) * _smooth_field(rng, (1, 1, 1, 16, 16))[0, 0, 0] for a in rng.uniform(0.5, 2.0, T + 2)]

    def states(lead: int):
        out = []
        for t in range(T + 1):
            x = torch.empty(1, 1, 2, 16, 16)
            x[0, 0, lead] = driver[t + 1]
            x[0, 0, 1 - lead] = driver[t]  # the other channel repeats the leader one step later
            out.append(x)
        return out

    fwd, _ = _drive(cfg, states(lead=0))
    rev, _ = _drive(cfg, states(lead=1))
    assert fwd["causality.asym_net.mean"][0] > 0.8
    assert rev["causality.asym_net.mean"][0] < -0.8
    np.testing.assert_allclose(fwd["causality.asym_abs.mean"], rev["causality.asym_abs.mean"], rtol=1e-5)
    assert fwd["causality.series_asym.lag1"][0] > 0.5
    assert np.isnan(fwd["spread.field.mean"]).all()  # M = 1


def test_diverged_row_is_flagged_by_nan_and_others_unchanged():
    T = 12
    cfg = _cfg(T, field_stride=2, temporal_stride=2)
    rng = np.random.default_rng(3)
    x0 = _smooth_field(rng, (3, 2, 2, 16, 16))
    states = [x0 * (1 + 0.1 * t) + 0.05 * _smooth_field(rng, (3, 2, 2, 16, 16)) for t in range(T + 1)]
    full, _ = _drive(cfg, states)
    dead, obs = _drive(cfg, states, dead_from={1: 7})
    for name in full:
        np.testing.assert_array_equal(dead[name][[0, 2]], full[name][[0, 2]], err_msg=name)
    # pre-divergence pools of the dead row are finite; pools with no pre-divergence sample are NaN
    assert np.isfinite(dead["spatial.skew.early"][1])
    assert np.isfinite(dead["dynamics.growth_rms.all"][1])
    assert not np.allclose(dead["spatial.skew.mean"][1], full["spatial.skew.mean"][1])
    assert np.isnan(dead["spatial.skew.late"][1])
    temporal = obs.temporal()
    assert np.isnan(temporal.values[1, temporal.attrs["steps"].index(8)]).all()
    assert np.isfinite(temporal.values[1, temporal.attrs["steps"].index(6), :5]).all()


def test_undefined_statistics_are_nan_not_missing():
    cfg = _cfg(1, channels=1, realizations=1)
    x0 = _smooth_field(np.random.default_rng(4), (2, 1, 1, 16, 16))
    v, obs = _drive(cfg, [x0, 0.9 * x0])
    assert set(v) == set(feature_names(cfg)["summary"])
    assert np.isnan(v["spatial.skew.std"]).all() and np.isnan(v["spatial.skew.trend"]).all()
    assert np.isfinite(v["spatial.skew.mean"]).all()
    assert np.isnan(v["cross.corr_mean.mean"]).all() and np.isnan(v["causality.asym_net.mean"]).all()
    assert np.isnan(v["spread.field.mean"]).all() and np.isnan(v["spread.spatial_skew.std"]).all()
    np.testing.assert_allclose(v["dynamics.growth_rms.all"], math.log(0.9), atol=1e-5)
    assert obs.temporal().values.shape[1] == 2  # steps 0 and 1: the stride is capped at ⌊T/4⌋, at least 1


def test_results_before_finish_are_refused():
    obs = FeatureObserver(_cfg(4), [0, 1], torch.device("cpu"))
    with pytest.raises(RuntimeError, match="before the rollout finished"):
        obs.summary()
    with pytest.raises(ValueError, match="does not match"):
        obs.start(torch.zeros(3, 2, 2, 16, 16), ScaledLive(1.0))


class TanhLive:
    def apply(self, x: torch.Tensor, step: int, exact: bool = False) -> torch.Tensor:
        return torch.tanh(2.0 * x)


@pytest.mark.parametrize(
    "leaf",
    [
        {"categories": ["spatial", "dynamics"]},
        {"step_stride": 3},
        {"field_stride": 3},
        {"temporal_stride": 5},
        {"morphology_threshold": 0.5},
        {"history_length": 16},
        {"sensitivity": {"probes": 5}},
        {"sensitivity": {"probes": 6, "epsilon": 0.01}},
        {"sensitivity": {"probes": 6, "large_epsilon": 0.5}},
    ],
)
def test_every_features_leaf_changes_the_output(leaf):
    T = 20
    base = {"step_stride": 1, "field_stride": 4, "temporal_stride": 4, "sensitivity": {"probes": 6}}
    rng = np.random.default_rng(7)
    x0 = _smooth_field(rng, (1, 2, 2, 16, 16))
    states = [x0 * (1 + 0.3 * math.sin(t)) + 0.2 * _smooth_field(rng, (1, 2, 2, 16, 16)) for t in range(T + 1)]
    a, obs_a = _drive(_cfg(T, **base), states, TanhLive())
    b, obs_b = _drive(_cfg(T, **{**base, **leaf}), states, TanhLive())
    same = set(a) == set(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    same_t = obs_a.temporal().values.shape == obs_b.temporal().values.shape and np.array_equal(
        obs_a.temporal().values, obs_b.temporal().values, equal_nan=True)
    assert not (same and same_t), f"features.{leaf} changed nothing"


def test_features_are_float32_inside_a_callers_autocast_region():
    """The observer switches autocast off: the same states give bit-identical features inside bf16 autocast."""
    T = 8
    cfg = _cfg(T, field_stride=4, temporal_stride=4, sensitivity={"probes": 3})
    rng = np.random.default_rng(3)
    states = [_smooth_field(rng, (2, 2, 2, 16, 16)) for _ in range(T + 1)]
    ref, obs_ref = _drive(cfg, states, TanhLive())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, obs_got = _drive(cfg, states, TanhLive())
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    np.testing.assert_array_equal(obs_got.temporal().values, obs_ref.temporal().values)

"""The name registry, the features config, INITIAL / ARCHITECTURE extraction and the docs catalogue."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ROOT

from spinlock.config import ConfigError, config_from_dict
from spinlock.features import (
    FeatureBlock,
    FeatureObserver,
    extract_architecture,
    extract_initial,
    feature_names,
    temporal_steps,
)
from spinlock.features.audit import near_constant_columns
from spinlock.features.catalog import DOC, splice
from spinlock.features.names import CATEGORIES, INITIAL_STATS
from spinlock.generate import design
from spinlock.operators.registry import DERIVED_KEYS, get_family
from spinlock.sampling.space import sample

SPACE = {
    "depth": {"type": "integer", "low": 2, "high": 4},
    "width": {"type": "choice", "values": [16, 32]},
    "kernel_size": {"type": "choice", "values": [3]},
    "activation": {"type": "choice", "values": ["relu", "tanh"]},
    "normalization": {"type": "choice", "values": ["none"]},
    "padding_mode": {"type": "choice", "values": ["circular"]},
    "weight_scale": {"type": "continuous", "low": 0.5, "high": 2.0, "scale": "log"},
    "bias": {"type": "boolean"},
    "noise_type": {"type": "choice", "values": ["gaussian", "correlated"]},
    "noise_level": {"type": "continuous", "low": 0.0, "high": 0.2},
    "noise_correlation_length": {"type": "continuous", "low": 1.0, "high": 4.0},
    "noise_schedule": {"type": "choice", "values": ["constant", "annealing"]},
    "noise_timescale": {"type": "continuous", "low": 0.5, "high": 0.5},
    "update_policy": {"type": "choice", "values": ["autoregressive", "residual", "convex"]},
    "step_size": {"type": "continuous", "low": 0.1, "high": 0.5},
}


def _cfg(**features):
    return config_from_dict({"parameters": SPACE, "simulation": {"steps": 10}, "features": features})


def test_default_widths_and_name_rules():
    names = feature_names(config_from_dict({}))
    assert len(names["initial"]) == 14 and names["initial"] == INITIAL_STATS
    assert 420 <= len(names["summary"]) <= 520
    assert len(names["architecture"]) >= 21
    for fam, cols in names.items():
        assert len(set(cols)) == len(cols), fam
    assert all(len(n.split(".")) == 3 for n in names["summary"])
    assert {n.split(".")[0] for n in names["summary"]} == set(CATEGORIES)
    assert all(len(n.split(".")) == 2 for n in names["temporal"])


def test_categories_switch_columns_and_keep_registry_order():
    cfg = _cfg(categories=["dynamics", "spatial"])
    names = feature_names(cfg)["summary"]
    assert {n.split(".")[0] for n in names} == {"spatial", "dynamics"}
    full = feature_names(_cfg())["summary"]
    assert list(names) == [n for n in full if n.split(".")[0] in ("spatial", "dynamics")]
    assert all(n.split(".")[0] in ("spatial", "dynamics") for n in feature_names(cfg)["temporal"])
    # the observer produces exactly these columns
    cfg = config_from_dict({"simulation": {"grid": 8, "steps": 3, "num_operators": 8, "batch_operators": 1},
                            "sharding": {"operators_per_shard": 1},
                            "storage": {"trajectories": {"stride": 1}},
                            "features": {"categories": ["spread", "cross"], "field_stride": 1}})
    obs = FeatureObserver(cfg, [0], torch.device("cpu"))
    x = torch.randn(1, 2, 3, 8, 8)
    obs.start(x, None)
    for t in (1, 2, 3):
        obs.observe(t, x * 0.9**t + 0.01 * torch.randn_like(x), torch.ones(1, dtype=torch.bool))
    obs.finish(torch.zeros(1, dtype=torch.int8), torch.full((1,), -1, dtype=torch.int32))
    assert obs.summary().names == feature_names(cfg)["summary"]
    assert np.isfinite(obs.summary().values).all()


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"categories": ["spatial", "spatial"]}, "repeated"),
        ({"categories": ["spectra"]}, "categories"),
        ({"categories": []}, "categories"),
        ({"sensitivity": {"epsilon": 0.1, "large_epsilon": 0.01}}, "large_epsilon"),
        ({"field_stride": 0}, "field_stride"),
        ({"sensitivity": {"probes": 1}}, "probes"),
        ({"sensitivity": {"stride": 64}}, "stride was replaced by probes"),
        ({"histroy_length": 64}, "unknown key"),
    ],
)
def test_invalid_features_config_names_the_key(features, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"features": features})


@pytest.mark.parametrize("steps", [1, 5, 16, 32, 64, 500])
def test_probe_steps_are_a_count_spread_over_the_run(steps):
    """The default count gives 4 distinct probes over 0..T at any T >= 3 (stride 64 gave one at T < 64)."""
    from spinlock.features.schedule import probe_steps

    cfg = config_from_dict({"simulation": {"steps": steps}, "storage": {"trajectories": {"stride": 1}}})
    got = probe_steps(cfg)
    assert got[0] == 0 and got[-1] == steps and got == sorted(set(got))
    assert len(got) == min(4, steps + 1)
    gaps = np.diff(got)
    assert gaps.max() - gaps.min() <= 1  # evenly spread


def test_temporal_steps_follow_the_stride():
    cfg = config_from_dict({"simulation": {"steps": 12}, "storage": {"trajectories": {"stride": 1}},
                            "features": {"temporal_stride": 3}})
    assert temporal_steps(cfg) == [0, 3, 6, 9, 12]


@pytest.mark.parametrize("steps", [1, 3, 4, 8, 10, 16])
def test_every_stride_schedule_keeps_four_samples_at_short_runs(steps):
    """Strides are capped at ⌊T/4⌋: the defaults (2, 8, 8) left one field sample at T < 8 (all-NaN std/trend)."""
    from spinlock.features.schedule import field_steps, step_steps

    cfg = config_from_dict({"simulation": {"steps": steps}, "storage": {"trajectories": {"stride": 1}}})
    for got in (step_steps(cfg), field_steps(cfg), temporal_steps(cfg)[1:]):
        assert len(got) >= min(4, steps) and got[-1] == steps
    if steps == 16:  # field_stride 8 capped at 4; step_stride 2 and temporal_stride 8 -> 4
        assert field_steps(cfg) == [4, 8, 12, 16] and temporal_steps(cfg) == [0, 4, 8, 12, 16]


def test_architecture_normalisation_one_hot_and_derived():
    cfg = _cfg()
    names = feature_names(cfg)["architecture"]
    assert "param.kernel_size=3" not in names and "param.noise_timescale" not in names  # fixed: dropped
    assert "param.width=16" in names and "param.update_policy=convex" in names
    params = list(cfg.parameters)
    row = {"depth": 3, "width": 1, "kernel_size": 0, "activation": 1, "normalization": 0, "padding_mode": 0,
           "weight_scale": 1.0, "bias": 1, "noise_type": 1, "noise_level": 0.05,
           "noise_correlation_length": 2.5, "noise_schedule": 0, "noise_timescale": 0.5,
           "update_policy": 2, "step_size": 0.3}
    values = np.array([[row[p] for p in params]], dtype=np.float64)
    family = get_family("cnn")
    rec = family.decode(cfg.parameters, values[0])
    block = extract_architecture(cfg, values, [family.derived(rec, cfg.simulation.channels)])
    v = dict(zip(block.names, block.values[0].tolist(), strict=True))
    assert v["param.depth"] == pytest.approx(0.5)
    assert v["param.weight_scale"] == pytest.approx(0.5)  # geometric midpoint of [0.5, 2] on a log scale
    assert v["param.noise_level"] == pytest.approx(0.25)
    assert v["param.width=32"] == 1 and v["param.width=16"] == 0
    assert v["param.activation=tanh"] == 1 and v["param.bias"] == 1
    assert sum(v[f"param.update_policy={p}"] for p in ("autoregressive", "residual", "convex")) == 1
    assert v["derived.memory"] == pytest.approx(0.7) and v["derived.step_effective"] == pytest.approx(0.3)
    assert v["derived.noise_corr_effective"] == pytest.approx(2.5)
    assert v["derived.noise_effective"] == pytest.approx(math.log10(0.3 * 0.05), abs=1e-6)  # α σ, constant s
    assert v["derived.gain_depth"] == pytest.approx(3 * math.log10(5 / 3), abs=1e-6)  # tanh gain 5/3
    for k in DERIVED_KEYS:
        assert f"derived.{k}" in v


@pytest.mark.parametrize("policy", [0, 1, 2])
@pytest.mark.parametrize("schedule", [0, 1])
def test_noise_effective_is_the_noise_entering_the_state(policy, schedule):
    """log10(b σ mean_t s(t)): closed form, and the RMS that BatchDynamics adds to a zero state per step."""
    from spinlock.operators.dynamics import BatchDynamics

    cfg = _cfg()
    params = list(cfg.parameters)
    row = {"depth": 2, "width": 0, "kernel_size": 0, "activation": 0, "normalization": 0, "padding_mode": 0,
           "weight_scale": 1.0, "bias": 0, "noise_type": 0, "noise_level": 0.1, "noise_correlation_length": 2.0,
           "noise_schedule": schedule, "noise_timescale": 0.5, "update_policy": policy, "step_size": 0.1}
    values = np.array([[row[p] for p in params]], dtype=np.float64)
    family = get_family("cnn")
    rec = family.decode(cfg.parameters, values[0])
    block = extract_architecture(cfg, values, [family.derived(rec, cfg.simulation.channels)])
    got = float(block.values[0, block.names.index("derived.noise_effective")])
    T, tau = cfg.simulation.steps, 0.5
    b = {0: 1.0, 1: 0.1, 2: 0.1}[policy]  # autoregressive 1, residual dt, convex α
    s_mean = 1.0 if schedule == 0 else (1 - math.exp(-1 / tau)) / (T * (1 - math.exp(-1 / (tau * T))))
    assert got == pytest.approx(math.log10(b * 0.1 * s_mean), abs=1e-6)
    dyn = BatchDynamics([rec], [0], 4, 0, T, 3, 64, torch.device("cpu"))
    zero = torch.zeros(1, 4, 3, 64, 64)
    rms = np.mean([dyn.update(zero, zero, t).square().mean().sqrt().item() for t in range(1, T + 1)])
    assert math.log10(rms) == pytest.approx(got, abs=0.01)  # 49152 draws per step: ~0.3 % error


def test_architecture_and_initial_refuse_bad_input():
    cfg = _cfg()
    family = get_family("cnn")
    with pytest.raises(ValueError, match="cfg.parameters order"):
        extract_architecture(cfg, np.zeros((2, 3)), [{}, {}])
    values = sample(design(cfg), [0]).values
    with pytest.raises(ValueError, match="DERIVED_KEYS"):
        extract_architecture(cfg, values, [{"weight_gain": 1.0}])
    rec = family.decode(cfg.parameters, values[0])
    assert extract_architecture(cfg, values, [family.derived(rec, 3)]).values.dtype == np.float32
    ic = torch.zeros(2, cfg.simulation.channels, cfg.simulation.grid, cfg.simulation.grid)
    ic[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        extract_initial(cfg, ic)
    with pytest.raises(ValueError, match="must be"):
        extract_initial(cfg, torch.zeros(2, 1, 4, 4))


def test_initial_features_of_a_two_channel_pattern():
    cfg = config_from_dict({"simulation": {"grid": 32, "channels": 2}})
    j = torch.arange(32, dtype=torch.float32)
    wave = torch.sin(2 * math.pi * 4 * (j + 0.5) / 32).expand(32, 32)
    ic = torch.stack([wave, -wave])[None]
    block = extract_initial(cfg, ic)
    v = dict(zip(block.names, block.values[0].tolist(), strict=True))
    assert v["cross.corr_mean"] == pytest.approx(-1.0, abs=1e-5)
    assert v["spectral.centroid"] == pytest.approx(4 / 16, abs=1e-5)
    assert v["spatial.grad_ratio"] == pytest.approx(2 * (1 - math.cos(2 * math.pi * 4 / 32)), rel=1e-4)
    assert v["morphology.pos_count"] == 4  # four positive stripes per channel


def test_feature_block_validates_its_columns():
    with pytest.raises(ValueError, match="names"):
        FeatureBlock(np.zeros((2, 3), np.float32), ("a", "b"))
    with pytest.raises(TypeError, match="float32"):
        FeatureBlock(np.zeros((2, 2)), ("a", "b"))
    with pytest.raises(ValueError, match="unique"):
        FeatureBlock(np.zeros((2, 2), np.float32), ("a", "a"))


def test_near_constant_report():
    rng = np.random.default_rng(0)
    vals = np.stack([rng.normal(size=200), np.full(200, 3.0), np.r_[np.zeros(199), 1.0],
                     np.full(200, np.nan), rng.integers(0, 5, 200)], 1)
    flagged = dict(near_constant_columns(vals, ["ok", "const", "mode", "nan", "discrete"]))
    assert set(flagged) == {"const", "mode", "nan"}


def test_docs_catalogue_is_current():
    text = DOC.read_text()
    assert splice(text) == text, "regenerate with: PYTHONPATH=. python -m spinlock.features.catalog"
    assert (ROOT / "docs" / "features.md") == DOC

"""Features of real operators through the rollout engine: batch independence, divergence, edge shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock.config import config_from_dict
from spinlock.features import (
    FeatureObserver,
    extract_architecture,
    extract_initial,
    feature_names,
    temporal_steps,
)
from spinlock.generate import design, make_ics
from spinlock.operators.registry import get_family
from spinlock.rollout.engine import RolloutEngine
from spinlock.sampling.space import sample

CPU = torch.device("cpu")


def _cfg(grid=16, channels=3, steps=12, realizations=2, family="cnn", **features):
    return config_from_dict({
        "operators": {"family": family},
        "simulation": {"num_operators": 16, "grid": grid, "channels": channels, "steps": steps,
                       "realizations": realizations, "batch_operators": 8},
        "sharding": {"operators_per_shard": 8},
        "storage": {"trajectories": {"stride": 1}},
        "features": {"field_stride": 4, "temporal_stride": 4, "sensitivity": {"probes": 4}, **features},
    })


def _run(cfg, indices, patch: dict[int, dict] | None = None):
    """Roll out ``indices`` as one batch; ``patch`` overrides record fields of chosen operators."""
    family = get_family(cfg.operators.family)
    s = sample(design(cfg), indices)
    records = [family.decode(cfg.parameters, row) for row in s.values]
    for i, fields in (patch or {}).items():
        records[list(indices).index(i)].update(fields)
    ic = make_ics(cfg, s.index, s.ic_entry, CPU)
    obs = FeatureObserver(cfg, list(indices), CPU)
    result = RolloutEngine(family, records, list(indices), cfg.seed, cfg.simulation, CPU).run(ic, [obs])
    return obs.summary(), obs.temporal(), result, ic, s, records


EXPLODE = {"weight_scale": 100.0, "activation": "relu", "normalization": "none", "bias": True,
           "update_policy": "autoregressive", "noise_level": 0.3}


def test_batch_independence_and_determinism():
    cfg = _cfg()
    ops = list(range(6))
    summary, temporal, *_ = _run(cfg, ops)
    again, *_ = _run(cfg, ops)
    np.testing.assert_array_equal(summary.values, again.values)
    for j, op in enumerate(ops):
        s1, t1, *_ = _run(cfg, [op])
        np.testing.assert_allclose(s1.values[0], summary.values[j], rtol=1e-5, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(t1.values[0], temporal.values[j], rtol=1e-5, atol=1e-5, equal_nan=True)


def test_diverged_operator_does_not_touch_the_others():
    cfg = _cfg(steps=16)
    ops = [0, 1, 2, 3]
    summary, temporal, result, *_ = _run(cfg, ops, patch={2: EXPLODE})
    assert result.status.tolist() == [0, 0, 1, 0]
    step = int(result.diverged_step[2])
    assert 1 <= step <= 16
    for j, op in enumerate(ops):
        if op == 2:
            continue
        alone, t_alone, *_ = _run(cfg, [op])
        np.testing.assert_allclose(alone.values[0], summary.values[j], rtol=1e-5, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(t_alone.values[0], temporal.values[j], rtol=1e-5, atol=1e-5, equal_nan=True)
    # the diverged row: no Inf anywhere, NaN after its divergence step in the curves
    row = summary.values[2]
    assert not np.isinf(row).any()
    steps = temporal_steps(cfg)
    after = [i for i, t in enumerate(steps) if t >= step]
    assert np.isnan(temporal.values[2, after]).all()
    assert np.isfinite(temporal.values[2, 0, :6]).all()  # step 0 is the shared IC


@pytest.mark.parametrize(("channels", "realizations", "steps"), [(1, 1, 1), (1, 2, 2), (3, 1, 2), (2, 3, 5)])
def test_widths_never_depend_on_c_m_t(channels, realizations, steps):
    cfg = _cfg(grid=8, channels=channels, steps=steps, realizations=realizations)
    reference = feature_names(_cfg())
    names = feature_names(cfg)
    assert names == reference  # names depend only on the parameter space and the enabled categories
    summary, temporal, _, ic, s, records = _run(cfg, [0, 1])
    assert summary.names == names["summary"] and summary.values.shape == (2, len(names["summary"]))
    assert temporal.names == names["temporal"]
    assert temporal.values.shape == (2, len(temporal_steps(cfg)), len(names["temporal"]))
    init = extract_initial(cfg, ic)
    assert init.names == names["initial"] and init.values.shape == (2, 14)
    family = get_family(cfg.operators.family)
    arch = extract_architecture(cfg, s.values, [family.derived(r, channels) for r in records])
    assert arch.names == names["architecture"]
    cross = [j for j, n in enumerate(summary.names) if n.startswith("cross.")]
    spread = [j for j, n in enumerate(summary.names) if n.startswith("spread.")]
    assert np.isnan(summary.values[:, cross]).all() == (channels == 1)
    assert np.isnan(summary.values[:, spread]).all() == (realizations == 1)
    assert np.isfinite(summary.values[:, summary.names.index("spatial.skew.mean")]).all()


@pytest.mark.parametrize("family", ["cnn", "uafno"])
def test_every_operator_family_gives_finite_registry_blocks(family):
    cfg = _cfg(family=family, steps=8)
    summary, temporal, result, ic, s, records = _run(cfg, [0, 1, 2])
    names = feature_names(cfg)
    assert summary.names == names["summary"] and temporal.names == names["temporal"]
    ok = result.status.numpy() == 0
    assert ok.any()
    finite = np.isfinite(summary.values[ok])
    undefined = [n for j, n in enumerate(summary.names) if not finite[:, j].all()]
    assert undefined == [], undefined  # T = 8 >= every pool's minimum; C = 3, M = 2
    fam = get_family(family)
    arch = extract_architecture(cfg, s.values, [fam.derived(r, cfg.simulation.channels) for r in records])
    assert arch.names == names["architecture"] and np.isfinite(arch.values).all()


def test_sensitivity_probe_directions_are_keyed_by_operator():
    cfg = _cfg(steps=4)
    a, *_ = _run(cfg, [3, 5])
    b, *_ = _run(cfg, [5, 3])
    cols = [j for j, n in enumerate(a.names) if n.startswith("sensitivity.")]
    np.testing.assert_allclose(a.values[0, cols], b.values[1, cols], rtol=1e-5, atol=1e-6)
    assert np.isfinite(a.values[:, cols]).all()

"""Owen-scrambled Sobol: stratification, determinism, discrepancy vs scipy; parameter mapping."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config
from scipy.stats import qmc

from spinlock.config.parameters import BooleanSpec, ChoiceSpec, ContinuousSpec, IntegerSpec
from spinlock.generate import design
from spinlock.sampling.metrics import stratification_metrics
from spinlock.sampling.sobol import sobol_points
from spinlock.sampling.space import sample, sampled_dimensions


@pytest.mark.parametrize("m,d", [(6, 5), (10, 14)])
def test_one_point_per_elementary_interval(m, d):
    n = 2**m
    pts = sobol_points(n, d, seed=123)
    assert pts.shape == (n, d) and (pts >= 0).all() and (pts < 1).all()
    strata = np.floor(pts * n).astype(int)
    for j in range(d):
        assert sorted(strata[:, j]) == list(range(n))


def test_owen_keeps_2d_net_property_of_first_two_dims():
    # (0, m, 2)-net: every 2^a x 2^(m-a) box holds exactly one point (dims 0 and 1 of Sobol).
    m = 8
    pts = sobol_points(2**m, 2, seed=5)
    for a in range(m + 1):
        cells = np.floor(pts[:, 0] * 2**a).astype(int) * 2 ** (m - a) + np.floor(pts[:, 1] * 2 ** (m - a)).astype(int)
        assert len(np.unique(cells)) == 2**m


def test_scramble_is_seeded_and_not_lms():
    a, b, c = sobol_points(256, 4, 1), sobol_points(256, 4, 1), sobol_points(256, 4, 2)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    plain = sobol_points(256, 4, 1, scramble="none")
    assert not np.allclose(a, plain)
    # Owen scrambling is not a digital shift: XOR with the plain digits varies across points
    xor = (np.floor(a[:, 0] * 2**32).astype(np.uint64)) ^ (np.floor(plain[:, 0] * 2**32).astype(np.uint64))
    assert len(np.unique(xor)) > 100


def test_prefix_property_points_do_not_depend_on_n():
    assert np.array_equal(sobol_points(100, 6, 9), sobol_points(300, 6, 9)[:100])


def test_discrepancy_no_worse_than_scipy_lms():
    n, d = 512, 8
    ours = [stratification_metrics(sobol_points(n, d, s))["centered_discrepancy"] for s in range(8)]
    lms = [float(qmc.discrepancy(qmc.Sobol(d, scramble=True, seed=s).random(n), method="CD")) for s in range(8)]
    iid = float(qmc.discrepancy(np.random.default_rng(0).random((n, d)), method="CD"))
    assert np.mean(ours) <= 1.05 * np.mean(lms)
    assert np.mean(ours) < 0.5 * iid


def test_metrics_values():
    pts = sobol_points(1024, 6, 0)
    m = stratification_metrics(pts)
    assert m["min_stratum_occupancy"] == 1.0 and m["max_abs_corr"] < 0.05
    iid = stratification_metrics(np.random.default_rng(0).random((1024, 6)))
    assert iid["min_stratum_occupancy"] < 0.7


def test_spec_mappings():
    u = (np.arange(10000) + 0.5) / 10000
    vals = IntegerSpec(type="integer", low=2, high=5).map(u)
    assert np.array_equal(np.bincount(vals.astype(int))[2:], [2500] * 4)
    logv = ContinuousSpec(type="continuous", low=1e-3, high=1e-1, scale="log").map(u)
    assert abs(np.median(logv) - 1e-2) < 1e-4
    ch = ChoiceSpec(type="choice", values=["a", "b", "c"], weights=[1, 2, 1]).map(u)
    assert np.allclose(np.bincount(ch.astype(int)) / len(u), [0.25, 0.5, 0.25], atol=1e-3)
    assert BooleanSpec(type="boolean", p_true=0.3).map(u).mean() == pytest.approx(0.3, abs=1e-3)


def test_fixed_parameters_consume_no_dimension():
    cfg = tiny_config()
    free, ic_dim = sampled_dimensions(cfg.parameters, len(cfg.initial_conditions.mix))
    assert "padding_mode" not in free and len(free) == len(cfg.parameters) - 1 and not ic_dim
    s = sample(design(cfg), range(12))
    j = list(cfg.parameters).index("padding_mode")
    assert np.isnan(s.unit[:, j]).all() and (s.values[:, j] == 0).all()


def test_sampling_rows_independent_of_request():
    cfg = tiny_config()
    full = sample(design(cfg), range(12))
    part = sample(design(cfg), [3, 7])
    assert np.array_equal(part.values, full.values[[3, 7]])
    with pytest.raises(IndexError):
        sample(design(cfg), [12])


def test_ic_mix_takes_a_weighted_dimension():
    cfg = tiny_config(**{
        "simulation.num_operators": 1024,
        "initial_conditions.mix": "[{type: gaussian_random_field, label: a, weight: 3},"
                                  " {type: gaussian_random_field, label: b, weight: 1, params: {beta: 1}}]",
    })
    s = sample(design(cfg), range(1024))
    assert np.bincount(s.ic_entry).tolist() == [768, 256]  # exact: Sobol stratifies the IC dimension too


def test_discrepancy_is_measured_on_a_bounded_prefix():
    """O(n²) discrepancy on all points would dominate the merge at 1M operators: a 4096-point prefix."""
    from spinlock.sampling.metrics import DISCREPANCY_POINTS

    pts = sobol_points(DISCREPANCY_POINTS + 100, 3, 0)
    m = stratification_metrics(pts)
    assert m["n"] == DISCREPANCY_POINTS + 100 and m["discrepancy_n"] == DISCREPANCY_POINTS
    assert m["centered_discrepancy"] == stratification_metrics(pts[:DISCREPANCY_POINTS])["centered_discrepancy"]

"""U-AFNO family: config checks, keyed weights, grouped = alone, shift equivariance, AFNO closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT

from spinlock.config import config_from_dict, load_config
from spinlock.config.loading import ConfigError
from spinlock.generate import design, plan_shards, prepare_output, run_shard
from spinlock.operators.registry import DERIVED_KEYS, get_family
from spinlock.operators.uafno import conv_receptive_field, max_modes, modrelu, soft_threshold
from spinlock.replay import compare_with_stored, replay_operator
from spinlock.rollout.engine import RolloutEngine, RolloutResult
from spinlock.sampling.space import sample
from spinlock.storage.checker import check_file
from spinlock.storage.layout import shard_path
from spinlock.storage.merge import merge_shards

CPU = torch.device("cpu")
CONFIG = ROOT / "configs" / "quickstart-uafno.yaml"
FAM = get_family("uafno")
BASE = {
    "levels": 1, "width": 8, "modes": 2, "blocks": 1, "sparsity": 0.0, "activation": "tanh",
    "weight_scale": 1.0, "noise_type": "correlated", "noise_level": 0.05, "noise_correlation_length": 2.0,
    "noise_schedule": "annealing", "noise_timescale": 0.5, "update_policy": "convex", "step_size": 0.5,
}


def tiny_uafno(**overrides):
    """configs/quickstart-uafno.yaml shrunk to seconds."""
    base = {
        "simulation.num_operators": 4, "simulation.grid": 16, "simulation.steps": 6,
        "simulation.batch_operators": 2, "sharding.operators_per_shard": 4,
        "storage.trajectories.stride": 2, "storage.trajectories.dtype": "float32",
    }
    return load_config(CONFIG, [f"{k}={v}" for k, v in {**base, **overrides}.items()])


def field(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Recorder:
    """Observer that keeps every state."""

    def start(self, x0, live):
        self.xs = [x0.clone()]

    def observe(self, step, x, alive):
        self.xs.append(x.clone())

    def finish(self, status, diverged_step):
        pass


def run_records(cfg, records, indices=None) -> tuple[torch.Tensor, RolloutResult]:
    """Trajectories [B, T+1, M, C, H, W] of records through the engine from a fixed random IC."""
    sim = cfg.simulation
    ic = field(len(records), sim.channels, sim.grid, sim.grid)
    eng = RolloutEngine(FAM, records, indices or list(range(len(records))), cfg.seed, sim, CPU)
    rec = Recorder()
    res = eng.run(ic, [rec])
    return torch.stack(rec.xs, dim=1), res


def group(records, indices=None, channels=3):
    return FAM.build_group(records, indices or list(range(len(records))), 0, channels, CPU)


# --- configuration ---------------------------------------------------------------------------------


def test_config_accepts_the_quickstart_and_the_default_space():
    cfg = tiny_uafno()
    assert cfg.operators.family == "uafno" and set(cfg.parameters) == set(FAM.rules)
    default = config_from_dict({"operators": {"family": "uafno"}, "simulation": {"batch_operators": 8}})
    assert set(default.parameters) == set(FAM.rules)


def test_unknown_missing_and_bad_parameters_are_named():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['depth'\] for family 'uafno'"):
        tiny_uafno(**{"parameters.depth": "{type: integer, low: 2, high: 3}"})
    raw = yaml.safe_load(CONFIG.read_text())
    del raw["parameters"]["modes"]
    with pytest.raises(ConfigError, match=r"missing \['modes'\] for family 'uafno'"):
        config_from_dict(raw)
    with pytest.raises(ConfigError, match=r"parameters.blocks: 3 does not divide the bottleneck channels 8"
                                          r" of width=4, levels=1"):
        tiny_uafno(**{"parameters.blocks.values": "[1, 3]"})
    with pytest.raises(ConfigError, match=r"parameters.levels: high=4 is above the maximum 3"):
        tiny_uafno(**{"parameters.levels.high": 4})
    with pytest.raises(ConfigError, match=r"values \['swish'\] not allowed"):
        tiny_uafno(**{"parameters.activation.values": "[relu, swish]"})


def test_grid_not_divisible_by_two_to_the_levels_is_refused():
    with pytest.raises(ConfigError, match=r"simulation.grid=12 is not divisible by 2\*\*levels=8"):
        tiny_uafno(**{"simulation.grid": 12})
    g = group([dict(BASE, levels=3)])
    with pytest.raises(ValueError, match=r"simulation.grid=12 is not divisible by 2\*\*levels=8"):
        g.forward(field(1, 1, 3, 12, 12))


# --- modes: every sampled value is in effect and stored as used --------------------------------------


def quickstart_modes(**overrides):
    """The quickstart-uafno space at grid 32 (levels 1-3: bottlenecks 16, 8, 4) with every row sampled."""
    cfg = tiny_uafno(**{"simulation.grid": 32, "simulation.num_operators": 256, **overrides})
    s = sample(design(cfg), range(cfg.simulation.num_operators))
    names = list(s.names)
    return cfg, s, s.values[:, names.index("levels")].astype(int), s.values[:, names.index("modes")].astype(int)


def test_stored_modes_fit_the_bottleneck_and_cover_every_fitting_value():
    """modes 1-6 at levels 3 (n_b = 4): only 1 and 2 take effect, so only they are drawn and stored."""
    cfg, s, lv, modes = quickstart_modes()
    assert sorted(set(lv.tolist())) == [1, 2, 3]
    for level in (1, 2, 3):
        cap = min(6, max_modes(32, level))
        got = modes[lv == level]
        assert sorted(set(got.tolist())) == list(range(1, cap + 1))
        # equal mass on the fitting values (Sobol: near-exact strata, so a tight bound)
        counts = np.bincount(got, minlength=cap + 1)[1:]
        assert counts.max() - counts.min() <= max(2, 0.15 * counts.mean())
    # levels whose bottleneck holds every configured value keep the plain mapping of the unit value
    j = list(s.names).index("modes")
    plain = cfg.parameters["modes"].map(s.unit[:, j])
    assert np.array_equal(s.values[lv == 1, j], plain[lv == 1])


def test_every_sampled_modes_value_gives_a_distinct_operator():
    """Operators that differ only in a sampled modes value never coincide (clipping made 2..6 identical)."""
    _, _, lv, modes = quickstart_modes()
    x = field(1, 1, 3, 32, 32, seed=9)
    for level in (1, 2, 3):
        outs = {m: group([dict(BASE, levels=level, modes=m, blocks=2)], [7]).forward(x)
                for m in sorted(set(modes[lv == level].tolist()))}
        vals = list(outs.values())
        assert all(not torch.equal(a, b) for i, a in enumerate(vals) for b in vals[i + 1:]), level


def test_modes_beyond_the_bottleneck_are_refused_not_clipped():
    g = group([dict(BASE, levels=3, modes=3)])
    with pytest.raises(ValueError, match=r"modes=3 exceeds n_b/2 = 2 of this U-AFNO's 4×4 bottleneck \(levels=3\)"):
        g.forward(field(1, 1, 3, 32, 32))


def test_choice_modes_are_drawn_among_the_fitting_choices():
    choice = "{type: choice, values: [8, 1, 4, 2], weights: [1, 1, 1, 2]}"
    cfg, s, lv, idx = quickstart_modes(**{"parameters.modes": choice})
    chosen = np.asarray([8, 1, 4, 2])[idx]
    for level in (1, 2, 3):
        assert (chosen[lv == level] <= max_modes(32, level)).all()
    assert sorted(set(chosen[lv == 3].tolist())) == [1, 2]
    assert sorted(set(chosen[lv == 1].tolist())) == [1, 2, 4, 8]
    # weights renormalized over what fits: at levels 3, value 2 has weight 2 of 3
    frac = float(np.mean(chosen[lv == 3] == 2))
    assert abs(frac - 2 / 3) < 0.08


def test_a_modes_range_that_fits_no_bottleneck_of_a_level_is_refused():
    with pytest.raises(ConfigError, match=r"parameters.modes: no value of \[3, 6\] fits levels=3 on simulation.grid=32:"
                                          r" the bottleneck is 4×4, so modes ≤ 2"):
        tiny_uafno(**{"simulation.grid": 32, "parameters.modes.low": 3})
    with pytest.raises(ConfigError, match=r"no value of \[1, 6\] fits levels=3 on simulation.grid=8"):
        tiny_uafno(**{"simulation.grid": 8})


# --- keyed weights and grouped execution -------------------------------------------------------------


def test_weights_and_trajectories_depend_only_on_seed_and_index():
    a, b = group([BASE], [5]), group([BASE], [5])
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    c = group([BASE], [6])
    assert not torch.equal(a.params["w1"], c.params["w1"])
    # operator 5 in a group with operator 3 keeps its weights (second half of each stacked tensor)
    pair = group([dict(BASE, activation="sin"), BASE], [3, 5])
    assert torch.equal(pair.params["w1"][1], a.params["w1"][0])
    assert torch.equal(pair.params["enc0_w"][16:], a.params["enc0_w"])
    cfg = tiny_uafno()
    t0, _ = run_records(cfg, [BASE], [5])
    t1, _ = run_records(cfg, [BASE], [5])
    t2, _ = run_records(cfg, [BASE], [6])
    assert torch.equal(t0, t1) and not torch.allclose(t0, t2)


def test_group_equals_each_operator_alone():
    """Per-operator activation, modes, sparsity and weight_scale inside one group (same key)."""
    recs = [
        dict(BASE, levels=2, blocks=2, activation="gelu", modes=4, sparsity=0.0, weight_scale=1.0),
        dict(BASE, levels=2, blocks=2, activation="sin", modes=1, sparsity=0.02, weight_scale=1.5),
        dict(BASE, levels=2, blocks=2, activation="relu", modes=3, sparsity=0.005, weight_scale=0.7),
    ]
    assert len({FAM.group_key(r) for r in recs}) == 1
    x = field(3, 2, 3, 32, 32)  # 8×8 bottleneck: modes up to 4
    together = group(recs, [10, 11, 12]).forward(x)
    assert together.shape == x.shape
    for i, rec in enumerate(recs):
        alone = group([rec], [10 + i]).forward(x[i : i + 1])
        assert torch.allclose(together[i], alone[0], atol=1e-5)


SWAPS = {
    "levels": 2, "width": 4, "modes": 3, "blocks": 2, "sparsity": 0.02, "activation": "sin",
    "weight_scale": 1.5, "noise_type": "laplace", "noise_level": 0.2, "noise_correlation_length": 4.0,
    "noise_schedule": "periodic", "noise_timescale": 0.9, "update_policy": "residual", "step_size": 0.2,
}


def test_swaps_cover_every_parameter():
    assert set(SWAPS) == set(FAM.rules)


@pytest.mark.parametrize("name", sorted(SWAPS))
def test_every_parameter_changes_the_trajectory(name):
    cfg = tiny_uafno()
    t0, r0 = run_records(cfg, [BASE])
    t1, r1 = run_records(cfg, [dict(BASE, **{name: SWAPS[name]})])
    assert r0.status.tolist() == r1.status.tolist() == [0]
    assert not torch.allclose(t0, t1)


# --- mathematics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2])
def test_commutes_with_circular_shifts_by_multiples_of_two_to_the_levels(levels):
    rec = dict(BASE, levels=levels, modes=max_modes(16, levels), sparsity=0.01, activation="gelu", blocks=2)
    g = group([rec])
    x = field(1, 2, 3, 16, 16, seed=3)
    fx = g.forward(x)
    step = 2**levels
    for shift in [(step, 0), (2 * step, 3 * step), (-step, 16 - step)]:
        fs = g.forward(torch.roll(x, shift, (-2, -1)))
        assert torch.allclose(torch.roll(fx, shift, (-2, -1)), fs, atol=1e-5)
    # a shift that pooling cannot follow is not an exact symmetry (so the check above is not vacuous)
    assert not torch.allclose(torch.roll(fx, (1, 0), (-2, -1)), g.forward(torch.roll(x, (1, 0), (-2, -1))),
                              atol=1e-3)


def test_complex_nonlinearities_keep_the_phase():
    z = torch.complex(field(64), field(64, seed=1))
    phase = torch.exp(1j * field(64, seed=2))
    b = torch.full((64,), -0.3)
    assert torch.allclose(modrelu(phase * z, b), phase * modrelu(z, b), atol=1e-6)
    assert torch.allclose(soft_threshold(phase * z, torch.tensor(0.5)), phase * soft_threshold(z, torch.tensor(0.5)),
                          atol=1e-6)
    shrunk = soft_threshold(z, torch.tensor(0.5))
    assert torch.allclose(shrunk.abs(), torch.relu(z.abs() - 0.5), atol=1e-6)
    assert torch.equal(soft_threshold(z, torch.tensor(0.0)), z)


def test_huge_sparsity_removes_the_spectral_branch():
    """λ above every coefficient: the bottleneck is the identity, the operator is the plain U-Net."""
    rec = dict(BASE, levels=2, modes=2, sparsity=1e6)
    g = group([rec])
    h = field(2, g.ch[-1], 4, 4)
    assert torch.equal(g.spectral(h), torch.zeros_like(h))
    plain = group([rec])
    plain.spectral = torch.zeros_like
    x = field(1, 2, 3, 16, 16, seed=4)
    assert torch.equal(g.forward(x), plain.forward(x))
    assert not torch.allclose(group([dict(rec, sparsity=0.0)]).forward(x), plain.forward(x), atol=1e-3)


def test_spectral_branch_matches_a_dense_reference():
    """Block-diagonal einsum + masks = dense block-diagonal complex MLP on |ky|, kx ≤ modes, then irfft2."""
    rec = dict(BASE, levels=1, width=4, blocks=2, modes=2, sparsity=0.004)
    g = group([rec])
    n, c = 8, g.ch[-1]
    h = field(1, c, n, n, seed=5)
    X = torch.fft.rfft2(h[0], norm="forward")  # [c, n, n//2+1]
    w1 = torch.block_diag(*g.params["w1"][0])  # [c, c]
    w2 = torch.block_diag(*g.params["w2"][0])
    b1 = g.params["b1"][0].reshape(c)
    Y = torch.zeros_like(X)
    for ky in range(n):
        for kx in range(n // 2 + 1):
            if min(ky, n - ky) <= 2 and kx <= 2:
                z1 = X[:, ky, kx] @ w1
                a = z1 / z1.abs() * torch.relu(z1.abs() + b1)
                z2 = a @ w2
                Y[:, ky, kx] = z2 / z2.abs() * torch.relu(z2.abs() - 0.004)
    ref = torch.fft.irfft2(Y, s=(n, n), norm="forward")
    assert (Y == 0).float().mean() > 0.5  # the mode mask and the threshold both act
    assert torch.allclose(g.spectral(h)[0], ref, atol=1e-5)


def test_derived_quantities():
    for levels in (1, 2, 3):
        rec = dict(BASE, levels=levels, blocks=2, sparsity=1e6, activation="gelu")
        g = group([rec], channels=1)
        d = FAM.derived(rec, 1)
        assert tuple(d) == DERIVED_KEYS and all(math.isfinite(v) for v in d.values())
        reals = sum(p.numel() * (2 if p.is_complex() else 1) for p in g.params.values())
        assert d["log_param_count"] == pytest.approx(math.log10(reals))
        assert d["effective_depth"] == 2 * levels + 4
        assert d["weight_gain"] == pytest.approx(math.sqrt(2.0))
        # receptive field = widest footprint of one input cell through the (spectral-free) operator
        x = field(1, 1, 1, 64, 64, seed=6)
        y = g.forward(x)
        widest = 0
        for pos in range(2**levels):
            xp = x.clone()
            xp[..., 32, 32 + pos] += 1.0
            cols = ((g.forward(xp) - y).abs()[0, 0, 0].amax(0) > 0).nonzero().flatten()
            widest = max(widest, int(cols.max() - cols.min() + 1))
        assert d["receptive_field"] == widest == conv_receptive_field(levels)


# --- end to end --------------------------------------------------------------------------------------


def test_run_shard_writes_a_conforming_shard_that_replays(tmp_path):
    cfg = tiny_uafno()
    prepare_output(cfg, tmp_path)
    (spec,) = plan_shards(cfg)
    summary = run_shard(cfg, spec, tmp_path)
    assert summary.operators == 4
    assert check_file(shard_path(tmp_path, spec.shard_id)) == []
    merge_shards(cfg, tmp_path, None)
    cmp = compare_with_stored(tmp_path, replay_operator(tmp_path, 3))
    assert cmp.mode == "bit-exact" and cmp.ok, cmp

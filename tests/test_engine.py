"""Operators, dynamics and the batched engine: determinism, divergence, every parameter matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from spinlock.generate import build_batch, design
from spinlock.operators import cnn
from spinlock.operators.dynamics import BatchDynamics, schedule_factor
from spinlock.operators.registry import get_family
from spinlock.rollout.engine import RolloutEngine
from spinlock.sampling.space import sample

CPU = torch.device("cpu")


class Recorder:
    def start(self, x0, live):
        self.xs = [x0.clone()]

    def observe(self, step, x, alive):
        self.xs.append(x.clone())

    def finish(self, status, diverged_step):
        self.status = status.clone()

    def traj(self):
        return torch.stack(self.xs, dim=1)  # [B, T+1, M, C, H, W]


def run_records(cfg, records, indices=None, ic=None):
    family = get_family(cfg.operators.family)
    indices = indices or list(range(len(records)))
    sim = cfg.simulation
    if ic is None:
        g = torch.Generator().manual_seed(0)
        ic = torch.randn(len(records), sim.channels, sim.grid, sim.grid, generator=g)
    eng = RolloutEngine(family, records, indices, cfg.seed, sim, CPU)
    rec = Recorder()
    res = eng.run(ic, [rec])
    return rec.traj(), res


def base_record(cfg, **kw):
    s = sample(design(cfg), [0])
    rec = get_family("cnn").decode(cfg.parameters, s.values[0])
    rec.update(kw)
    return rec


def test_batch_is_deterministic_and_keyed():
    cfg = tiny_config()
    s = sample(design(cfg), range(4))
    a = build_batch(cfg, s, slice(0, 4), CPU)
    b = build_batch(cfg, s, slice(0, 4), CPU)
    ra, rb = Recorder(), Recorder()
    a[3].run(a[2], [ra])
    b[3].run(b[2], [rb])
    assert torch.equal(ra.traj(), rb.traj())
    # realizations differ (independent noise), operators differ
    t = ra.traj()
    assert not torch.equal(t[:, -1, 0], t[:, -1, 1])


def test_divergence_is_flagged_per_operator_and_isolated():
    cfg = tiny_config(**{"simulation.steps": 12})
    good = base_record(cfg, weight_scale=0.8, normalization="layer", activation="tanh", update_policy="convex",
                       noise_type="gaussian", noise_level=0.01)
    bad = dict(good, weight_scale=80.0, normalization="none", activation="relu", update_policy="autoregressive",
               depth=good["depth"])
    t_both, res = run_records(cfg, [good, bad], [0, 1])
    t_good, res_good = run_records(cfg, [good], [0])
    assert res.status.tolist() == [0, 1] and res.diverged_step[0] == -1 and 1 <= res.diverged_step[1] <= 12
    k = int(res.diverged_step[1])
    assert torch.isnan(t_both[1, k:]).all() and torch.isfinite(t_both[1, :k]).all()
    assert torch.isfinite(t_both[0]).all()
    # the healthy operator's trajectory is unaffected by its diverging neighbour (same shapes → same kernels)
    assert torch.allclose(t_both[0], t_good[0], atol=1e-5)


def test_schedules():
    assert schedule_factor("constant", 7, 10, 0.5) == 1.0
    assert schedule_factor("annealing", 1, 10, 0.5) == 1.0
    assert schedule_factor("annealing", 6, 10, 0.5) == pytest.approx(np.exp(-1))
    assert schedule_factor("periodic", 1 + 5, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert schedule_factor("periodic", 11, 10, 1.0) == pytest.approx(1.0)


def test_noise_depends_on_step_and_type():
    cfg = tiny_config(**{"simulation.steps": 6, "simulation.grid": 32})
    rec = base_record(cfg, noise_level=0.1)
    fam = get_family("cnn")

    def noise(**kw):
        d = BatchDynamics([dict(rec, **kw)], [0], 2, cfg.seed, 10, 3, 32, CPU)
        return d.noise
    n_const = noise(noise_type="gaussian", noise_schedule="constant")
    assert not torch.equal(n_const(1), n_const(2))
    assert abs(float(n_const(3).std()) - 0.1) < 0.01
    n_ann = noise(noise_type="gaussian", noise_schedule="annealing", noise_timescale=0.2)
    assert float(n_ann(9).std()) < 0.1 * float(n_ann(1).std())
    lap = noise(noise_type="laplace")(2).double().flatten() / 0.1
    assert abs(float((lap**4).mean() / lap.var() ** 2) - 6) < 1.0
    corr = noise(noise_type="correlated", noise_correlation_length=3.0)(2)[0, 0, 0].double()
    white = n_const(2)[0, 0, 0].double()
    assert abs(float(corr.std()) - 0.1) < 0.03  # renormalised to unit variance before σ

    def lag1(f):
        return float((f * torch.roll(f, 1, -1)).mean() / (f * f).mean())
    assert lag1(corr) > 0.8 and abs(lag1(white)) < 0.15
    assert fam.name == "cnn"


SWAPS = {
    "depth": 3, "width": 16, "kernel_size": 5, "activation": "sin", "normalization": "instance",
    "padding_mode": "reflect", "weight_scale": 1.7, "bias": True, "noise_type": "laplace", "noise_level": 0.2,
    "noise_schedule": "periodic", "update_policy": "residual",
}


@pytest.mark.parametrize("name", sorted(SWAPS))
def test_every_parameter_changes_the_trajectory(name):
    cfg = tiny_config()
    rec = base_record(cfg, depth=2, width=8, kernel_size=3, activation="tanh", normalization="layer",
                      padding_mode="circular", weight_scale=1.0, bias=False, noise_type="gaussian",
                      noise_level=0.05, noise_schedule="annealing", noise_timescale=0.5,
                      update_policy="convex", step_size=0.5, noise_correlation_length=2.0)
    t0, _ = run_records(cfg, [rec])
    t1, _ = run_records(cfg, [dict(rec, **{name: SWAPS[name]})])
    assert not torch.allclose(t0, t1)


@pytest.mark.parametrize("name,value,context", [
    ("step_size", 0.2, {"update_policy": "convex"}),
    ("noise_timescale", 0.9, {"noise_schedule": "annealing"}),
    ("noise_correlation_length", 5.0, {"noise_type": "correlated"}),
])
def test_conditional_parameters_act_in_their_context(name, value, context):
    cfg = tiny_config()
    rec = base_record(cfg, noise_level=0.1, **context)
    t0, _ = run_records(cfg, [rec])
    t1, _ = run_records(cfg, [dict(rec, **{name: value})])
    assert not torch.allclose(t0, t1)


def test_update_policies_closed_form():
    """With zero noise: residual x1 = x0 + dt f(x0); convex x1 = (1-α) x0 + α f(x0)."""
    cfg = tiny_config(**{"simulation.steps": 1, "simulation.realizations": 1, "storage.trajectories.stride": 1})
    fam = get_family("cnn")
    base = base_record(cfg, noise_level=0.0, step_size=0.25)
    ic = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    outs = {}
    for pol in ("autoregressive", "residual", "convex"):
        t, _ = run_records(cfg, [dict(base, update_policy=pol)], ic=ic)
        outs[pol] = t[0, 1, 0]
    f = outs["autoregressive"]
    assert torch.allclose(outs["residual"], ic[0] + 0.25 * f, atol=1e-6)
    assert torch.allclose(outs["convex"], 0.75 * ic[0] + 0.25 * f, atol=1e-6)
    assert fam.derived(base, 3)["receptive_field"] == base["depth"] * (base["kernel_size"] - 1) + 1


def test_circular_padding_commutes_with_periodic_shift():
    cfg = tiny_config(**{"simulation.steps": 1, "simulation.realizations": 1, "storage.trajectories.stride": 1})
    rec = base_record(cfg, noise_level=0.0, padding_mode="circular", update_policy="autoregressive")
    eng = RolloutEngine(get_family("cnn"), [rec], [0], 0, cfg.simulation, CPU)
    x = torch.randn(1, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    fx = eng.apply(x, 1)
    fs = eng.apply(torch.roll(x, (3, 5), (-2, -1)), 1)
    assert torch.allclose(torch.roll(fx, (3, 5), (-2, -1)), fs, atol=1e-5)


@pytest.mark.parametrize("k,width,padding", [(1, 8, "circular"), (3, 32, "circular"), (5, 4, "reflect"),
                                             (3, 8, "zeros")])
def test_cpu_conv_paths_equal_one_grouped_convolution(monkeypatch, k, width, padding):
    """The CPU path (layer-major passes over a few operators, per-operator convolutions, batched matrix
    products for narrow layers) computes the same function as one grouped convolution per layer (the CUDA path), to
    float32 summation-order error, and an operator's result does not depend on its group-mates."""
    cfg = tiny_config()
    acts, norms = ["relu", "tanh", "sin", "gelu"], ["none", "instance", "layer", "none"]
    records = [base_record(cfg, kernel_size=k, width=width, depth=3, padding_mode=padding, activation=a,
                           normalization=n, bias=True) for a, n in zip(acts, norms, strict=True)]
    x = torch.randn(4, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cpu = cnn.CNNGroup(records, [0, 1, 2, 3], 7, 3, CPU)
    modes = ["im2col"] * 3 if k == 1 else ["im2col", "direct", "expand"] if width >= 16 else ["im2col"] * 3
    assert cpu.modes == modes and not cpu.grouped
    monkeypatch.setattr(cnn, "_conv_mode", lambda *a: "grouped")
    grouped = cnn.CNNGroup(records, [0, 1, 2, 3], 7, 3, CPU)
    assert grouped.grouped and grouped.modes == ["grouped"] * 3
    a, b = cpu.forward(x), grouped.forward(x)
    assert a.shape == b.shape == x.shape
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    monkeypatch.undo()
    for i in range(4):  # alone, and behind other operators: bit-identical
        alone = cnn.CNNGroup(records[i:i + 1], [i], 7, 3, CPU).forward(x[i:i + 1])
        assert torch.equal(alone[0], a[i])
    tail = cnn.CNNGroup(records[2:], [2, 3], 7, 3, CPU).forward(x[2:])
    assert torch.equal(tail, a[2:])
    for budget in (1, 1 << 40):  # one operator per pass, all in one pass
        monkeypatch.setattr(cnn, "PASS_BYTES", budget)
        assert torch.equal(cnn.CNNGroup(records, [0, 1, 2, 3], 7, 3, CPU).forward(x), a)


def test_bf16_on_cpu_autocasts_the_operator():
    """CPU autocast stands in for CUDA (tests/test_features_precision.py checks the features)."""
    cfg = tiny_config(**{"simulation.precision": "bf16"})
    rec = base_record(cfg)
    assert RolloutEngine(get_family("cnn"), [rec], [0], 0, cfg.simulation, CPU).autocast_dtype == torch.bfloat16

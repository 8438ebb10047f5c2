"""Numerical-fault status (2): non-finite values from the noise, the IC or a feature are not divergence.

Also the contractive repro of issue 13 §1: contractive low-noise operators are never flagged, whatever
the noise type, even when the hash hits its extreme values (the old Laplace sampler turned those into ±inf
and 4 of 8 such operators were reported "diverged").
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_engine import base_record, run_records
from test_rng_extremes import EXTREMES

from spinlock.operators.dynamics import BatchDynamics
from spinlock.rng import BatchRandom
from spinlock.rollout.engine import feature_faults
from spinlock.storage.layout import STATUS_DIVERGED, STATUS_FAULT, STATUS_OK

NOISE_TYPES = ("gaussian", "laplace", "correlated", "multiplicative")


def contractive_records(cfg, noise_type: str, n: int = 8) -> list[dict]:
    """The issue's repro operators: depth 2, width 8, tanh, weight_scale 0.5–0.6, convex α 0.1–0.2,
    σ 0.001–0.01 (spread evenly over the ranges)."""
    f = np.linspace(0.0, 1.0, n)
    return [
        base_record(cfg, depth=2, width=8, activation="tanh", normalization="none", weight_scale=0.5 + 0.1 * a,
                    update_policy="convex", step_size=0.1 + 0.1 * a, noise_type=noise_type,
                    noise_level=0.001 * 10**a, noise_schedule="constant")
        for a in f
    ]


@pytest.fixture
def sprinkled_extremes(monkeypatch):
    """The real hash, with every 61st value replaced by one of the extreme inputs (cycled)."""
    real = BatchRandom._bits

    def bits(self, shape):
        b = real(self, shape)
        flat = b.reshape(-1).clone()
        pos = torch.arange(0, flat.numel(), 61)
        flat[pos] = EXTREMES[torch.arange(pos.numel()) % EXTREMES.numel()]
        return flat.reshape(b.shape)

    monkeypatch.setattr(BatchRandom, "_bits", bits)


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_contractive_repro_flags_nothing(sprinkled_extremes, noise_type):
    """Fails on the old sampler for Laplace (every operator flagged at step 1)."""
    cfg = tiny_config(**{"simulation.steps": 6, "simulation.realizations": 3})
    records = contractive_records(cfg, noise_type)
    traj, res = run_records(cfg, records)
    assert res.status.tolist() == [STATUS_OK] * 8, f"{noise_type}: flagged at steps {res.diverged_step.tolist()}"
    assert bool(torch.isfinite(traj).all())


def test_non_finite_noise_is_a_fault_not_divergence(monkeypatch, caplog):
    """An injected ±inf noise value at step 3 of operator 1: status fault at step 3 with a WARNING naming the
    operator, step and source; operator 0 runs on unchanged; a genuinely exploding operator is still
    'diverged'."""
    cfg = tiny_config(**{"simulation.steps": 12})
    good = base_record(cfg, weight_scale=0.8, normalization="layer", activation="tanh", update_policy="convex",
                       noise_type="gaussian", noise_level=0.01)
    bad = dict(good, weight_scale=80.0, normalization="none", activation="relu", update_policy="autoregressive")
    _, alone = run_records(cfg, [good, good, bad], [0, 1, 2])
    real = BatchDynamics.noise

    def noise(self, t):
        eta = real(self, t)
        if t == 3:
            eta[1, 0, 0, 0, 0] = float("inf")
        return eta

    monkeypatch.setattr(BatchDynamics, "noise", noise)
    with caplog.at_level(logging.WARNING, logger="spinlock.rollout.engine"):
        traj, res = run_records(cfg, [good, good, bad], [10, 11, 12])
    assert res.status.tolist() == [STATUS_OK, STATUS_FAULT, STATUS_DIVERGED]
    assert res.diverged_step[1] == 3 and res.diverged_step[2] == alone.diverged_step[2]
    assert torch.isnan(traj[1, 3:]).all() and torch.isfinite(traj[1, :3]).all()
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 1 and "operator 11, step 3, source noise" in msgs[0]


def test_non_finite_ic_is_a_fault_at_step_0(caplog):
    cfg = tiny_config(**{"simulation.steps": 5})
    rec = base_record(cfg, weight_scale=0.8, normalization="layer", activation="tanh", noise_level=0.01)
    ic = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t_alone, _ = run_records(cfg, [rec], [0], ic=ic[:1].clone())
    ic[1, 2, 5, 5] = float("nan")
    with caplog.at_level(logging.WARNING, logger="spinlock.rollout.engine"):
        traj, res = run_records(cfg, [rec, rec], [0, 7], ic=ic)
    assert res.status.tolist() == [STATUS_OK, STATUS_FAULT] and res.diverged_step.tolist() == [-1, 0]
    assert torch.isnan(traj[1, 1:]).all()
    assert torch.allclose(traj[0], t_alone[0], atol=1e-6)  # the healthy neighbour is unaffected
    assert any("operator 7, step 0, source IC" in r.getMessage() for r in caplog.records)


def test_feature_faults_rules(caplog):
    """±inf anywhere and NaN in ARCHITECTURE mark an ok operator; NaN elsewhere means 'undefined' and
    diverged operators are left alone."""
    status = np.array([0, 0, 0, 1, 0], np.int8)
    summary = np.zeros((5, 4), np.float32)
    summary[1, 2] = np.inf
    summary[2, 0] = np.nan  # undefined (e.g. a std pool with one sample): not a fault
    summary[3, 1] = -np.inf  # diverged: stays diverged
    temporal = np.zeros((5, 3, 2), np.float32)
    arch = np.zeros((5, 3), np.float32)
    arch[4, 1] = np.nan
    with caplog.at_level(logging.WARNING, logger="spinlock.rollout.engine"):
        bad = feature_faults({"summary": summary, "temporal": temporal, "architecture": arch}, status,
                             [100, 101, 102, 103, 104])
    assert bad.tolist() == [False, True, False, False, True]
    assert status.tolist() == [0, STATUS_FAULT, 0, STATUS_DIVERGED, STATUS_FAULT]
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "operator 101" in text and "source feature" in text and "features/architecture" in text


def test_feature_fault_reaches_the_shard_and_spinlock_info(tmp_path, monkeypatch):
    """A non-finite INITIAL value of one operator → status 2 in the shard, its summary and `spinlock info`;
    ``spinlock replay`` still matches it."""
    import json

    import h5py

    import spinlock.features.batch as features  # where the shard's INITIAL block is computed
    from spinlock.generate import plan_shards, run_shard
    from spinlock.storage.reader import describe

    real = features.extract_initial

    def extract_initial(cfg, ic):
        block = real(cfg, ic)
        block.values[1, 0] = np.inf
        return block

    monkeypatch.setattr(features, "extract_initial", extract_initial)
    cfg = tiny_config(**{"simulation.steps": 4})
    spec = plan_shards(cfg)[0]
    summary = run_shard(cfg, spec, tmp_path)
    with h5py.File(summary.path) as f:
        status = f["status"][()]
        assert json.loads(f.attrs["summary"])["faults"] == 1
    assert status[1] == STATUS_FAULT and (status != STATUS_FAULT).sum() == len(status) - 1
    text = describe(summary.path)
    assert "fault 1" in text and "WARNING: numerical faults" in text
    # replay re-runs the rollout only: a feature fault's rollout was ok, so the replay matches
    from spinlock.replay import compare_with_stored, replay_operator

    assert compare_with_stored(summary.path, replay_operator(summary.path, 1)).check("status").ok

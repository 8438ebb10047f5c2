"""Counter-based randomness: keyed, batch-independent, statistically sound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock.rng import BatchRandom, derive_key


def test_derive_key_distinct_and_stable():
    keys = {derive_key(0, "noise", op, r, t) for op in range(20) for r in range(3) for t in range(20)}
    assert len(keys) == 1200
    assert derive_key(0, "a", 1) == derive_key(0, "a", 1) != derive_key(0, "b", 1)
    # no "seed + i" aliasing between (seed, counter) pairs
    assert derive_key(1, "s", 0) != derive_key(0, "s", 1)
    with pytest.raises(ValueError):
        derive_key(0, "s", -1)


def test_sample_depends_only_on_its_key():
    keys = [derive_key(3, "x", i) for i in range(6)]
    full = BatchRandom(keys)
    a = full.normal(4, 5)
    b = full.uniform(7)
    sub = BatchRandom([keys[4], keys[1]])
    assert torch.equal(sub.normal(4, 5), a[[4, 1]])
    assert torch.equal(sub.uniform(7), b[[4, 1]])


def test_spawned_streams_differ_and_are_reproducible():
    r = BatchRandom([derive_key(0, "n", 0)])
    x1, x2 = r.spawn(1).normal(100), r.spawn(2).normal(100)
    assert not torch.equal(x1, x2) and torch.equal(x1, r.spawn(1).normal(100))


def test_distributions():
    r = BatchRandom([derive_key(0, "stats", i) for i in range(4)])
    z = r.normal(50_000).double()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    kurt = ((z - z.mean()) ** 4).mean() / z.var() ** 2
    assert abs(kurt - 3) < 0.1
    lap = r.laplace(50_000).double()
    assert abs(lap.std() - 1) < 0.02 and abs(((lap**4).mean() / lap.var() ** 2) - 6) < 0.5
    u = r.uniform(50_000).double()
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    ints = r.integers(2, 7, 50_000)
    assert ints.min() == 2 and ints.max() == 6
    assert np.allclose(np.bincount(ints.flatten().numpy())[2:] / ints.numel(), 0.2, atol=0.01)
    # successive draws are uncorrelated
    a, b = r.normal(10_000).double().flatten(), r.normal(10_000).double().flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 4 / math.sqrt(a.numel())


def test_subset_continues_the_same_streams():
    keys = [derive_key(5, "sub", i) for i in range(5)]
    full, part = BatchRandom(keys), BatchRandom(keys)
    a0, a1 = full.normal(3, 7), full.laplace(3, 7)  # odd element count: pairs are cut at n
    part.normal(3, 7)
    rows = torch.tensor([3, 0])
    assert torch.equal(part.subset(rows).laplace(3, 7), a1[[3, 0]])
    assert a0.shape == (5, 3, 7)


def test_box_muller_pair_members_are_independent():
    """Both outputs of each 64-bit hash are used (first and second half of a draw): they must be
    uncorrelated in value and in magnitude, and normal in distribution (KS test)."""
    from scipy import stats

    z = BatchRandom([derive_key(1, "bm", 0)]).normal(200_000).double().flatten()
    a, b = z[:100_000], z[100_000:]
    lim = 4 / math.sqrt(a.numel())
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < lim
    assert abs(torch.corrcoef(torch.stack([a**2, b**2]))[0, 1]) < lim
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3

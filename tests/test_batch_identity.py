"""Where "bitwise identical alone or in a batch" holds (docs/features.md, *Determinism*): with one torch
intra-op thread on CPU, every IC type and both operator families' features. Worker-count invariance does
not depend on it (engine batches are aligned to global operator indices)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_features_pipeline import _cfg, _run

from spinlock.ics.registry import generate_ic, ic_types
from spinlock.rng import derive_key


@pytest.mark.parametrize("name", sorted(ic_types()))
def test_every_ic_type_is_bitwise_identical_alone_or_in_a_batch(name):
    assert torch.get_num_threads() == 1
    keys = [derive_key(0, "ic", i) for i in range(6)]
    batch = generate_ic(name, {}, keys, 3, 24)
    alone = torch.cat([generate_ic(name, {}, [k], 3, 24) for k in keys])
    assert torch.equal(batch, alone)


@pytest.mark.parametrize("family", ["cnn", "uafno"])
def test_features_are_bitwise_identical_alone_or_in_a_batch(family):
    cfg = _cfg(family=family, grid=16, steps=12)
    ops = list(range(5))
    summary, temporal, *_ = _run(cfg, ops)
    for j, op in enumerate(ops):
        s1, t1, *_ = _run(cfg, [op])
        np.testing.assert_array_equal(s1.values[0], summary.values[j])
        np.testing.assert_array_equal(t1.values[0], temporal.values[j])

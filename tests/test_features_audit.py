"""Run-length audit on real quickstart operators: no dead (all-NaN, constant or duplicated) column.

Before the sensitivity probes became a count, ``sensitivity.stride: 64`` left one probe (step 0) at
T < 64: six all-NaN columns and mean = min = max = early = late for each probe statistic; before the
strides were capped at ⌊T/4⌋, ``field_stride: 8`` did the same to every field statistic at T < 16.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from spinlock.config import load_config
from spinlock.features.audit import dead_columns
from spinlock.generate import run_operators

OPERATORS = 64


def test_dead_columns_flags_nan_constant_and_equal_columns():
    v = np.array([[np.nan, 1.0, 2.0, 2.0, 5.0, np.nan], [np.nan, 1.0, 3.0, 3.0, np.nan, np.nan],
                  [np.nan, 1.0, 4.0, 4.0, 5.0, 7.0]])
    got = dict(dead_columns(v, ["a", "b", "c", "d", "e", "f"]))
    assert got == {"a": "no finite value", "b": "constant (1)", "d": "equal to c", "e": "constant (5)",
                   "f": "constant (7)"}


@pytest.mark.parametrize("steps", [8, 16, 32, 64])
def test_no_dead_column_at_any_run_length(steps):
    """64 quickstart operators at 16², all 28 IC types: every family, converged operators only (T = 8 too,
    beyond the issue's 16/32/64; below that the history is shorter than the longest autocorrelation lag)."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml",
                      [f"simulation.steps={steps}", "simulation.grid=16", "simulation.batch_operators=16"])
    res = run_operators(cfg, range(OPERATORS))
    ok = res.status == 0
    assert ok.sum() >= OPERATORS * 0.8, f"only {ok.sum()} of {OPERATORS} operators converged"
    dead = {}
    for fam, blk in res.blocks.items():
        rows = blk.values if fam == "initial" else blk.values[ok]  # the IC does not depend on the rollout
        dead.update({f"{fam} {n}": why for n, why in dead_columns(rows, blk.names)})
    assert not dead, f"T={steps}: {len(dead)} dead columns: {dead}"

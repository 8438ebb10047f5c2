"""Features do not depend on the rollout precision: fp32 vs bf16/fp16 autocast (CPU standing in for CUDA).

The same 32 quickstart operators (16², T = 32, all IC types) are rolled out in fp32 and under reduced
precision autocast. Tolerances, per column group (docs/features.md, *Precision*), with σ the column's
standard deviation over the converged fp32 operators (for TEMPORAL over operators and steps, and |Δ| the
largest difference over an operator's steps):

* INITIAL: bit-identical (the IC does not depend on the rollout).
* ``sensitivity.*``: |Δ| <= 0.05 decades, every operator (the probes evaluate f exactly, so only the
  probed state differs; under autocast they were off by up to 0.9 decades in bf16, 0.2 in fp16).
* ``spread.*`` (not precision-robust: rounding acts like noise of relative size 2⁻⁹ per step, larger
  than the noise of low-noise operators): median |Δ| <= 0.5σ, 90th percentile <= 1.5σ, max <= 6σ.
* every other SUMMARY and TEMPORAL column: median |Δ| <= 0.15σ, 90th percentile <= 0.5σ, max <= 2σ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

from spinlock.config import load_config
from spinlock.errors import SpinlockError
from spinlock.generate import design, run_operators
from spinlock.rollout.engine import RolloutEngine

OVERRIDES = ["simulation.steps=32", "simulation.grid=16", "simulation.batch_operators=16"]
OPERATORS = range(32)
SENSITIVITY_TOL = 0.05  # decades; the probed states differ a little, so the probes do too
SPREAD_TOL = (0.5, 1.5, 6.0)  # median, 90th percentile, max of |Δ| / σ
OTHER_TOL = (0.15, 0.5, 2.0)


def _run(precision: str):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", [*OVERRIDES, f"simulation.precision={precision}"])
    return run_operators(cfg, OPERATORS)


@pytest.fixture(scope="module")
def fp32():
    return _run("fp32")


def _relative(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|Δ| per operator and column, σ per column); TEMPORAL [N, T', D]: max |Δ| over steps."""
    sd = np.nanstd(a.reshape(-1, a.shape[-1]).astype(np.float64), axis=0)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if diff.ndim == 3:
        diff = np.nanmax(diff, axis=1)
    return diff, sd


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_features_do_not_depend_on_rollout_precision(fp32, precision):
    low = _run(precision)
    np.testing.assert_array_equal(low.status, fp32.status)
    ok = fp32.status == 0
    assert ok.sum() >= 28
    np.testing.assert_array_equal(low.blocks["initial"].values, fp32.blocks["initial"].values)
    bad = []
    for fam in ("summary", "temporal"):
        a, b = fp32.blocks[fam].values[ok], low.blocks[fam].values[ok]
        names = fp32.blocks[fam].names
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{fam}: NaN pattern changed")
        diff, sd = _relative(a, b)
        for j, name in enumerate(names):
            d = diff[:, j][~np.isnan(diff[:, j])]
            if name.startswith("sensitivity."):
                if d.max() > SENSITIVITY_TOL:
                    bad.append(f"{name}: max |Δ| {d.max():.3g} decades > {SENSITIVITY_TOL}")
                continue
            r = d / max(sd[j], 1e-12)
            got = (np.median(r), np.percentile(r, 90), r.max())
            tol = SPREAD_TOL if name.startswith("spread.") else OTHER_TOL
            if any(g > t for g, t in zip(got, tol, strict=True)):
                bad.append(f"{fam} {name}: |Δ|/σ median/p90/max {got[0]:.3g}/{got[1]:.3g}/{got[2]:.3g} > {tol}")
    assert not bad, f"{precision}: {len(bad)} columns out of tolerance:\n" + "\n".join(bad)




def test_exact_apply_is_float32_outside_autocast(tiny_cfg):
    """The engine autocasts its operator on CPU; ``exact`` evaluations are identical to an fp32 engine's."""
    from spinlock.operators.registry import get_family
    from spinlock.sampling.space import sample

    family = get_family("cnn")
    s = sample(design(tiny_cfg), range(4))
    records = [family.decode(tiny_cfg.parameters, row) for row in s.values]
    x = torch.randn(4, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    engines = {p: RolloutEngine(family, records, list(range(4)), 0, tiny_cfg.simulation.model_copy(
        update={"precision": p}), torch.device("cpu")) for p in ("fp32", "bf16")}
    ref = engines["fp32"].apply(x, 1)
    assert torch.equal(engines["bf16"].apply(x, 1, exact=True), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # even inside a caller's autocast region
        assert torch.equal(engines["bf16"].apply(x, 1, exact=True), ref)
    rounded = engines["bf16"].apply(x, 1)
    assert rounded.dtype == torch.float32 and not torch.equal(rounded, ref)
    rel = (rounded - ref).norm() / ref.norm()
    assert 1e-4 < rel < 3e-2  # bf16 rounding, not a different operator


def test_unsupported_autocast_is_a_clear_error(tiny_cfg, monkeypatch):
    from spinlock.operators.registry import get_family
    from spinlock.sampling.space import sample

    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: False)  # as torch does for an unsupported dtype
    family = get_family("cnn")
    rec = family.decode(tiny_cfg.parameters, sample(design(tiny_cfg), range(1)).values[0])
    sim = tiny_cfg.simulation.model_copy(update={"precision": "fp16"})
    with pytest.raises(SpinlockError, match="does not autocast to torch.float16 on cpu; use fp32"):
        RolloutEngine(family, [rec], [0], 0, sim, torch.device("cpu"))

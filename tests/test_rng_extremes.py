"""Every sampler is finite at the extreme hash values, and the fix left the distributions unchanged.

A hash reaches 0 or 2^32-1 in one 32-bit half once in 2^32 draws, which a rollout at the seed's scale
does several times per operator (issue 13 §1: the old Laplace inverse CDF gave ±inf there). The tests feed
those inputs directly, through the pure ``*_from_bits`` conversions and through ``BatchRandom`` with its
hash replaced (``_bits`` is the one seam every draw goes through).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from spinlock.rng import (
    BatchRandom,
    derive_key,
    integers_from_bits,
    laplace_pair_from_bits,
    normal_pair_from_bits,
    uniform64_from_bits,
    uniform_from_bits,
)

HALF = [0, 1, 63, 64, 2**32 - 129, 2**32 - 128, 2**32 - 1]
"""32-bit extremes: the float32 conversion of k·2^-32 rounds onto 0 / 0.5 / 1 at these."""
ENDS = [0, 2**63 - 1, 2**63, 2**64 - 1]
"""64-bit ends as unsigned values: 0, 2^63-1, -2^63 and -1 as int64."""


def as_int64(values: list[int]) -> torch.Tensor:
    return torch.tensor([v - (1 << 64) if v >= (1 << 63) else v for v in values], dtype=torch.int64)


# every pair of 32-bit extremes in the (high, low) halves, and the 64-bit ends
EXTREMES = as_int64(sorted({(h << 32) | lo for h in HALF for lo in HALF} | set(ENDS)))


@pytest.fixture
def extreme_bits(monkeypatch):
    """BatchRandom whose hash cycles through EXTREMES (spawned and subset streams included)."""

    def bits(self, shape):
        shape = tuple(int(s) for s in shape)
        self._call += 1
        idx = torch.arange(self.batch * math.prod(shape), device=self.device) % EXTREMES.numel()
        return EXTREMES.to(self.device)[idx].reshape(self.batch, *shape)

    monkeypatch.setattr(BatchRandom, "_bits", bits)


def test_pure_conversions_are_finite_and_in_range_at_extremes():
    u = uniform64_from_bits(EXTREMES)
    assert u.dtype == torch.float64 and bool(((u > 0) & (u < 1)).all())
    # symmetric: complementing the bits maps u to 1 - u exactly
    assert torch.equal(uniform64_from_bits(~EXTREMES), 1.0 - u)
    for lo, hi in ((0.0, 1.0), (-2.0, 3.0), (1.0, 1.0 + 1e-6)):
        v = uniform_from_bits(EXTREMES, lo, hi)
        assert v.dtype == torch.float32 and bool(((v > lo) & (v < hi)).all()), (lo, hi)
    k = integers_from_bits(EXTREMES, -3, 4)
    assert int(k.min()) == -3 and int(k.max()) == 3
    for conv, bound in ((normal_pair_from_bits, 6.8), (laplace_pair_from_bits, 15.7)):
        for v in conv(EXTREMES):
            assert v.dtype == torch.float32 and bool(torch.isfinite(v).all()), conv.__name__
            assert float(v.abs().max()) <= bound


def test_laplace_halves_are_exact_sign_exponentials():
    """One 32-bit half: top bit the sign, low 31 bits k → E = -ln((k + 1/2) 2^-31), x = ±E/√2."""
    top = [(1 << 31) | k for k in (0, 5, 2**31 - 1)]
    bits = as_int64([(h << 32) | lo for h, lo in zip([0, 5, 2**31 - 1] + top, top + [0, 5, 2**31 - 1], strict=True)])
    a, b = laplace_pair_from_bits(bits)
    e = lambda k: -math.log((k + 0.5) * 2.0**-31) / math.sqrt(2.0)  # noqa: E731
    want = torch.tensor([e(0), e(5), e(2**31 - 1)] * 2, dtype=torch.float32)
    sign = torch.tensor([1.0] * 3 + [-1.0] * 3)
    assert torch.allclose(a, sign * want, rtol=1e-6, atol=1e-7)
    assert torch.allclose(b, -sign * want, rtol=1e-6, atol=1e-7)


def test_every_sampler_is_finite_when_the_hash_hits_its_extremes(extreme_bits):
    """Through the public methods (this is what the rollout calls): fails on the old inverse-CDF Laplace
    (±inf) and on the old ``uniform64`` ((k + 1/2)·2^-53 rounds to exactly 1.0 at the top)."""
    r = BatchRandom([derive_key(0, "x", i) for i in range(3)])
    n = 2 * EXTREMES.numel() + 1  # odd: the pair samplers cut their last pair
    for name, draw in {
        "normal": lambda: r.normal(n),
        "laplace": lambda: r.laplace(n),
        "laplace subset": lambda: r.subset(torch.tensor([2, 0])).laplace(n),
        "spawned laplace": lambda: r.spawn(7).laplace(3, n),
        "uniform": lambda: r.uniform(n),
    }.items():
        v = draw()
        assert bool(torch.isfinite(v).all()), f"{name}: {int((~torch.isfinite(v)).sum())} non-finite"
    u = r.uniform(n)
    assert bool(((u > 0) & (u < 1)).all())
    u64 = r.uniform64(n)
    assert bool(((u64 > 0) & (u64 < 1)).all()), "uniform64 left the open interval (0, 1)"
    ints = r.integers(0, 7, n)
    assert int(ints.min()) >= 0 and int(ints.max()) <= 6


@pytest.mark.parametrize("noise_type", ["gaussian", "laplace", "correlated", "multiplicative"])
def test_noise_of_every_type_is_finite_at_extremes(extreme_bits, noise_type):
    from spinlock.operators.dynamics import BatchDynamics

    rec = {"noise_type": noise_type, "noise_level": 0.1, "noise_correlation_length": 2.0,
           "noise_schedule": "constant", "noise_timescale": 1.0, "update_policy": "autoregressive",
           "step_size": 1.0}
    dyn = BatchDynamics([rec, dict(rec, noise_type="gaussian")], [0, 1], 2, 0, 4, 3, 16, torch.device("cpu"))
    for t in (1, 2):
        eta = dyn.noise(t)
        assert bool(torch.isfinite(eta).all()) and float(eta.abs().max()) > 0


def test_every_ic_type_is_finite_at_extremes(extreme_bits):
    """ICs turn 53-bit uniforms into floats (logs, Box-Muller, powers): all finite when every draw is extreme."""
    from spinlock.ics.registry import generate_ic, ic_types

    bad = []
    for name in sorted(ic_types()):
        x = generate_ic(name, {}, [derive_key(0, "ic", i) for i in range(2)], 3, 16)
        if not bool(torch.isfinite(x).all()):
            bad.append(name)
    assert not bad, f"non-finite ICs under extreme hash values: {bad}"


def _moments(x: torch.Tensor) -> tuple[float, float, float]:
    x = x.double().flatten()
    m = float(x.mean())
    v = float(x.var())
    return m, v, float(((x - m) ** 4).mean()) / v**2


def test_moments_over_a_million_draws():
    """Mean, variance and kurtosis (tolerances ~5 standard errors at n = 2^20)."""
    r = BatchRandom([derive_key(11, "moments", i) for i in range(4)])
    n = 1 << 18  # per key: 2^20 draws in all
    m, v, k = _moments(r.normal(n))
    assert abs(m) < 0.005 and abs(v - 1) < 0.007 and abs(k - 3) < 0.05, (m, v, k)
    lap = r.laplace(n)
    m, v, k = _moments(lap)
    assert abs(m) < 0.005 and abs(v - 1) < 0.011 and abs(k - 6) < 0.25, (m, v, k)
    assert abs(float((lap > 0).double().mean()) - 0.5) < 0.0025
    u = r.uniform64(n)
    assert abs(float(u.mean()) - 0.5) < 0.0015 and abs(float(u.var()) - 1 / 12) < 0.0007


def test_laplace_distribution_and_pair_independence():
    """KS against Laplace(0, 1/√2); the two halves of a hash are independent in value and magnitude."""
    from scipy import stats

    x = BatchRandom([derive_key(2, "lap", 0)]).laplace(400_000).double().flatten()
    assert stats.kstest(x.numpy(), "laplace", args=(0.0, 1 / math.sqrt(2))).pvalue > 1e-3
    a, b = x[:200_000], x[200_000:]  # first and second member of each pair
    lim = 4 / math.sqrt(a.numel())
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < lim
    assert abs(torch.corrcoef(torch.stack([a.abs(), b.abs()]))[0, 1]) < lim


def test_tiny_run_status_ok_under_extreme_laplace_noise(extreme_bits):
    """End to end through the engine: with every noise draw extreme, a contractive Laplace operator is not
    flagged (the old sampler made its first step ±inf)."""
    from test_engine import base_record, run_records

    cfg = tiny_config(**{"simulation.steps": 3, "simulation.realizations": 2})
    rec = base_record(cfg, depth=2, width=8, activation="tanh", weight_scale=0.5, update_policy="convex",
                      step_size=0.1, noise_type="laplace", noise_level=0.001, normalization="none")
    traj, res = run_records(cfg, [rec], ic=torch.zeros(1, 3, 16, 16))
    assert res.status.tolist() == [0] and bool(torch.isfinite(traj).all())

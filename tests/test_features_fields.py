"""Closed-form checks of the per-step field statistics on analytic fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from spinlock.features import fields
from spinlock.features.morphology import morphology_stats, periodic_components
from spinlock.features.spectral import Spectrum


def _one(x: np.ndarray) -> fields.Standardized:
    """[C, H, W] or [H, W] numpy → Standardized with leading dims [1, 1]."""
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.dim() == 2:
        t = t[None]
    return fields.standardize(t[None, None])


def _all(x: np.ndarray, threshold: float = 1.0) -> dict[str, float]:
    st = _one(x)
    n = st.x.shape[-1]
    vals = {
        **fields.spatial_step(st), **fields.spatial_field(st), **Spectrum(n, torch.device("cpu")).stats(st),
        **morphology_stats(st, threshold), **fields.cross_step(st), **fields.cross_field(st),
        **fields.invariants(st),
    }
    return {k: float(v.reshape(-1)[0]) for k, v in vals.items()}


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # (row = y, col = x)


@pytest.mark.parametrize("k0", [3, 5])
def test_pure_sine(k0):
    n = 64
    yy, xx = _grid(n)
    x = np.sin(2 * np.pi * k0 * (xx + 0.5) / n)
    v = _all(x)
    a = 2 * np.pi * k0 / n
    assert v["spectral.peak"] * (n // 2) == pytest.approx(k0, abs=1e-4)
    assert v["spectral.centroid"] * (n // 2) == pytest.approx(k0, abs=1e-4)
    assert v["spectral.entropy"] == pytest.approx(0.0, abs=1e-5)
    # forward-difference energy of sqrt(2) sin: 2 (1 - cos a); Laplacian: (2 - 2 cos a)^2
    assert v["spatial.grad_ratio"] == pytest.approx(2 * (1 - np.cos(a)), rel=1e-4)
    assert v["spatial.lap_ratio"] == pytest.approx((2 - 2 * np.cos(a)) ** 2, rel=1e-4)
    assert v["spatial.log_grad"] == pytest.approx(np.log10(1 - np.cos(a)), abs=1e-4)
    assert v["spatial.anisotropy"] > 20  # no variation along y
    assert v["spatial.crossings"] == pytest.approx(0.5 * 2 * k0 / n)
    band = 1 + int(k0 / (n // 2) > 1 / 8)
    assert v[f"spectral.band{band}"] == pytest.approx(1.0, abs=1e-5)
    # arcsine distribution of sqrt(2) sin θ: q_p = sqrt(2) sin(π (p - 1/2)); histogram resolution 1/16
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):
        expected = np.sqrt(2) * np.sin(np.pi * (p - 0.5))
        assert v[f"spatial.q{round(p * 100):02d}"] == pytest.approx(expected, abs=0.08)
    assert v["spatial.skew"] == pytest.approx(0.0, abs=1e-5)
    assert v["spatial.kurt"] == pytest.approx(1.5 - 3.0, abs=1e-4)  # E[(√2 sin)^4] = 3/2


def test_gaussian_blob_moments_and_components():
    n = 64
    yy, xx = _grid(n)
    x = np.exp(-((xx - 30) ** 2 + (yy - 20) ** 2) / (2 * 4.0**2))
    v = _all(x)
    ref = x.astype(np.float32).astype(np.float64).ravel()
    assert v["spatial.mean"] == pytest.approx(ref.mean(), rel=1e-4)
    assert v["spatial.log_std"] == pytest.approx(np.log10(ref.std()), abs=1e-4)
    assert v["spatial.skew"] == pytest.approx(stats.skew(ref), rel=1e-3)
    assert v["spatial.kurt"] == pytest.approx(stats.kurtosis(ref), rel=1e-3)
    assert v["spatial.log_absmax"] == pytest.approx(0.0, abs=1e-6)
    assert v["morphology.pos_count"] == 1
    assert v["morphology.neg_count"] == 0  # the background sits well above -σ
    assert v["morphology.largest"] == 1
    z = (ref - ref.mean()) / ref.std()
    assert v["morphology.coverage"] == pytest.approx(np.mean(np.abs(z) > 1), abs=1e-9)
    assert v["morphology.pos_area"] == pytest.approx(np.mean(z > 1), abs=1e-9)


def test_components_wrap_around_the_periodic_boundary():
    n = 48
    yy, xx = _grid(n)
    dy, dx = np.minimum(yy, n - yy), np.minimum(xx, n - xx)  # periodic distance to the corner
    corner = np.exp(-(dx**2 + dy**2) / (2 * 3.0**2))
    assert _all(corner)["morphology.pos_count"] == 1  # 4 pieces in the unwrapped image
    two = corner + np.exp(-((xx - 24) ** 2 + (yy - 24) ** 2) / (2 * 3.0**2))
    assert _all(two)["morphology.pos_count"] == 2


def test_periodic_components_against_union_find():
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = rng.random((4, 10, 10)) < rng.uniform(0.2, 0.6)
        count, fg, largest = periodic_components(mask)
        for r, m in enumerate(mask):
            parent: dict = {}

            def find(a, parent=parent):
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                return a

            cells = list(zip(*np.nonzero(m), strict=True))
            for c in cells:
                parent[c] = c
            for i, j in cells:
                for di, dj in ((1, 0), (0, 1)):
                    nb = ((i + di) % 10, (j + dj) % 10)
                    if nb in parent:
                        parent[find(nb)] = find((i, j))
            roots = [find(c) for c in cells]
            sizes = np.unique(roots, axis=0, return_counts=True)[1] if cells else np.array([0])
            assert count[r] == (len(sizes) if cells else 0)
            assert fg[r] == m.sum()
            assert largest[r] == sizes.max()


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_constant_field_is_finite_and_degenerate(value):
    v = _all(np.full((2, 16, 16), value))
    for k in ("grad_ratio", "lap_ratio", "skew", "tv", "crossings", "entropy"):
        assert v[f"spatial.{k}"] == 0.0, k
    assert v["spatial.log_std"] == -30.0
    assert v["spatial.log_grad"] == -30.0
    assert v["spatial.mean"] == value
    assert v["spatial.offset"] == (1.0 if value else 0.0)
    assert v["spatial.anisotropy"] == 0.0
    assert all(v[f"spectral.band{i}"] == 0.0 for i in range(1, 5))
    assert v["spectral.flatness"] == pytest.approx(1.0)
    assert v["morphology.pos_count"] == v["morphology.neg_count"] == v["morphology.coverage"] == 0.0
    assert all(np.isfinite(x) for x in v.values())


def test_white_noise_spectrum_is_flat():
    rng = np.random.default_rng(1)
    v = _all(rng.standard_normal((8, 128, 128)))  # statistics are channel means: 8 independent fields
    assert abs(v["spectral.slope"]) < 0.03  # per-field std ≈ 0.025
    assert v["spectral.flatness"] > 0.95
    assert v["spatial.kurt"] == pytest.approx(0.0, abs=0.1)
    assert v["spatial.grad_ratio"] == pytest.approx(4.0, rel=0.05)  # 2 axes × E[(a - b)²] = 2
    assert v["spatial.crossings"] == pytest.approx(0.5, abs=0.02)
    assert v["spatial.anisotropy"] == pytest.approx(0.0, abs=0.05)
    # the power of shells beyond k_nyq/2 (incl. corners) is that band's share of all modes
    k = np.sqrt(np.fft.fftfreq(128, 1 / 128)[:, None] ** 2 + np.fft.fftfreq(128, 1 / 128)[None] ** 2)
    share = (np.round(k) > 32).sum() / (k.size - 1)
    assert v["spectral.band4"] == pytest.approx(share, abs=0.02)


def test_quantiles_match_torch_quantile_within_histogram_resolution():
    z = torch.randn(6, 4096)
    est = fields.histogram_quantiles(fields.fine_histogram(z), fields.QUANTILES)
    ref = torch.quantile(z, torch.tensor(fields.QUANTILES), dim=-1).T
    assert (est - ref).abs().max() < 1 / 16


def test_cross_channel_correlation_and_mutual_information():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((32, 32))
    b = rng.standard_normal((32, 32))
    same = _all(np.stack([a, a]))
    assert same["cross.corr_mean"] == pytest.approx(1.0, abs=1e-5)
    anti = _all(np.stack([a, -a]))
    assert anti["cross.corr_mean"] == pytest.approx(-1.0, abs=1e-5)
    assert anti["cross.corr_abs"] == pytest.approx(1.0, abs=1e-5)
    indep = _all(np.stack([a, b, rng.standard_normal((32, 32))]))
    assert indep["cross.corr_abs"] < 0.06
    assert indep["cross.mi"] < 0.06  # plug-in bias ~ 49 / (2·1024)
    assert same["cross.mi"] > 1.5  # = entropy of the 8-bin marginal
    single = _all(a)
    for k in ("corr_mean", "corr_abs", "corr_maxabs", "mi"):
        assert math.isnan(single[f"cross.{k}"])


def test_lag_statistics_detect_the_leading_channel():
    rng = np.random.default_rng(3)
    f0, f1 = rng.standard_normal((2, 32, 32))
    prev = _one(np.stack([f0, rng.standard_normal((32, 32))]))
    cur = _one(np.stack([rng.standard_normal((32, 32)), f0]))  # channel 1 copies channel 0 one step later
    lag = {k: float(v) for k, v in fields.lag_stats(prev, cur).items()}
    assert lag["causality.asym_net"] == pytest.approx(1.0, abs=0.1)
    assert lag["causality.asym_abs"] == pytest.approx(1.0, abs=0.1)
    assert abs(lag["dynamics.field_acf1"]) < 0.1
    rev = {k: float(v) for k, v in fields.lag_stats(_one(np.stack([f1, f0])), _one(np.stack([f0, f1]))).items()}
    assert rev["causality.asym_net"] == pytest.approx(0.0, abs=1e-6)  # symmetric exchange


def test_invariants_block_averaging():
    n = 16
    yy, xx = _grid(n)
    checker = np.where((xx + yy) % 2 == 0, 1.0, -1.0)
    v = _all(checker)
    assert v["invariants.l2_s1"] == pytest.approx(0.0, abs=1e-6)
    assert v["invariants.l2_s2"] == -15.0  # 2×2 blocks average a checkerboard away (floored RMS)
    assert v["invariants.grad_s2"] == -30.0
    assert v["invariants.grad_s1"] == pytest.approx(np.log10(8.0), abs=1e-6)  # |Δ| = 2 on both axes
    smooth = np.sin(2 * np.pi * xx / n)
    s = _all(smooth)
    assert s["invariants.l2_s1"] > s["invariants.l2_s2"] > s["invariants.l2_s4"]


def test_morphology_in_chunks_equals_one_pass(monkeypatch):
    import spinlock.features.morphology as morphology

    rng = np.random.default_rng(6)
    st = _one(rng.standard_normal((5, 24, 24)))
    whole = morphology_stats(st, 0.5)
    monkeypatch.setattr(morphology, "CHUNK_CELLS", 2 * 24 * 24 * 2)  # two fields per labelling call
    chunked = morphology_stats(st, 0.5)
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], rtol=0, atol=0)

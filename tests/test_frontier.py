"""PCA + PQ baseline of the tokenizer frontier (spinlock.encoding.frontier) and its report plot."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock.encoding.frontier import pca_pq, r2, run_frontier
from spinlock.errors import DataError


def _planes(n: int, seed: int = 0) -> np.ndarray:
    """Rows on 64 points of a plane of standard deviation 10 plus 64 points of an orthogonal plane of
    standard deviation 1, in 12-D (so one 2-D subspace holds ~99 % of the variance)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((12, 4)))[0].T
    a, b = rng.standard_normal((64, 2)) * 10.0, rng.standard_normal((64, 2))
    pick = rng.integers(0, 64, (n, 2))
    return np.concatenate([a[pick[:, 0]], b[pick[:, 1]]], axis=1) @ basis


def test_pq_tokens_quantize_principal_planes_in_order():
    """One token (256 codes >= 64 points) reproduces the wide plane, so R² is its share of the
    validation variance; two tokens reproduce everything."""
    x = _planes(900)
    train, val = x[:800], x[800:]
    out = pca_pq(train, val, [1, 2])
    assert [p["tokens"] for p in out] == [1, 2] and [p["components"] for p in out] == [2, 4]
    mean, (_, _, vt) = train.mean(0), np.linalg.svd(train - train.mean(0), full_matrices=False)
    wide = (val - mean) @ vt[:2].T @ vt[:2] + mean  # the wide plane, unquantized
    assert out[0]["r2"] == pytest.approx(r2(val, wide), abs=2e-3)
    assert 0.95 < out[0]["r2"] < 0.995
    assert out[1]["r2"] == pytest.approx(1.0, abs=2e-3)


def test_run_frontier_names_what_is_missing(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(DataError, match="cleaning.npz"):
        run_frontier(tmp_path)


def test_run_frontier_is_measured_once_per_tokenizer(tmp_path, monkeypatch):
    """The baseline is fitted by the first call, read back by the next, and fitted again when the
    tokenizer's summary changes (a refit) or the baseline's settings do."""
    import spinlock.encoding.frontier as F

    tdir = tmp_path / "tokenizer"
    tdir.mkdir()
    for name in ("cleaning.npz", "tokenizer.json", "summary.json"):
        (tdir / name).write_text("{}")
    fits = []
    monkeypatch.setattr(F.FeatureCleaner, "load", staticmethod(lambda path: None))
    monkeypatch.setattr(F, "tokenizer_points", lambda run: {"tokens": [2, 4]})
    x = _planes(60)
    monkeypatch.setattr(F, "load_split", lambda run, cleaner, rows: {"train": {"scalar": x[:50]},
                                                                      "validation": {"scalar": x[50:]}})
    monkeypatch.setattr(F, "pca_pq", lambda *a: fits.append(a[3:]) or [{"tokens": 2, "r2": 0.5 + len(fits)}])
    first = F.run_frontier(tmp_path)
    assert F.run_frontier(tmp_path) == first and len(fits) == 1
    assert first["pq"] == [{"tokens": 2, "r2": 1.5}]
    (tdir / "summary.json").write_text('{"refit": 1}')
    assert F.run_frontier(tmp_path)["pq"][0]["r2"] == 2.5
    F.run_frontier(tmp_path, codes=16)
    assert fits == [(256, 0), (256, 0), (16, 0)]
    (tdir / "frontier.json").write_text("not json")  # a damaged file is measured again, not an error
    assert F.run_frontier(tmp_path, codes=16)["pq"][0]["r2"] == 4.5


def test_frontier_plot_draws_both_methods():
    from spinlock.viz.tokenizer_plots import plot_frontier

    frontier = {"tokenizer": {"tokens": [10, 20, 30], "scalar": [0.7, 0.8, 0.85], "validation_rows": 40},
                "pq": [{"tokens": n, "r2": r} for n, r in ((10, 0.6), (20, 0.75), (30, 0.84))]}
    ax = plot_frontier(frontier).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["tokenizer: coarse, +medium, all"].get_ydata()) == [0.7, 0.8, 0.85]
    assert list(lines["PCA + PQ (256 codes / token)"].get_xdata()) == [10, 20, 30]

"""Array-level rendering: colour limits, colormaps, render modes, spectra, canvas layout."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock.errors import SpinlockError
from spinlock.rng import numpy_rng
from spinlock.viz.aggregate import aggregate_panels, radial_power_spectrum, realization_stats
from spinlock.viz.canvas import BLOCK, ClipCanvas, default_ncols
from spinlock.viz.colors import (
    NAN_RGB,
    apply_colormap,
    channels_to_rgb,
    colormap_lut,
    format_limits,
    robust_limits,
    to_index,
    variance_limits,
)
from spinlock.viz.frames import heatmap_panels, pca_basis, pca_rgb, render_panels, rgb_panels


def _name(label: str) -> str:
    """A panel label without its colour limits (``... ±a`` or ``... [lo, hi]``)."""
    return label.split(" [")[0].split(" ±")[0]


def test_robust_limits_percentiles_symmetric_and_degenerate():
    x = np.arange(101, dtype=np.float64)
    assert robust_limits(x, 1.0) == pytest.approx((1.0, 99.0))
    assert robust_limits(x, 0.0) == pytest.approx((0.0, 100.0))
    assert robust_limits(x - 50.0, 0.0, symmetric=True) == pytest.approx((-50.0, 50.0))
    assert robust_limits(np.full(10, 3.0)) == (2.5, 3.5)
    assert robust_limits(np.array([np.nan, np.inf])) == (0.0, 1.0)
    with_nan = np.concatenate([x, [np.nan, np.inf, -np.inf]])
    assert robust_limits(with_nan, 1.0) == pytest.approx((1.0, 99.0))
    with pytest.raises(ValueError, match="percentile"):
        robust_limits(x, 50.0)
    assert format_limits((-2.0, 2.0)) == "±2" and format_limits((0.0, 0.1234)) == "[0, 0.123]"
    assert variance_limits(np.zeros((3, 3)), 1.0) == (0.0, 1.0)
    assert variance_limits(np.r_[np.zeros(200), 5.0], 1.0) == (0.0, 5.0)  # robust limit 0: fall back to max


def test_colormap_maps_limits_to_ends_and_nan_to_grey():
    lut = colormap_lut("viridis")
    x = np.array([[-1.0, 0.0, 1.0, 5.0, np.nan]])
    rgb = apply_colormap(x, "viridis", (-1.0, 1.0))
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], lut[0])
    np.testing.assert_array_equal(rgb[0, 1], lut[128])  # 0.5 * 255 = 127.5 rounds to even 128
    np.testing.assert_array_equal(rgb[0, 2], lut[255])
    np.testing.assert_array_equal(rgb[0, 3], lut[255])  # clipped
    np.testing.assert_array_equal(rgb[0, 4], NAN_RGB)
    assert to_index(np.array([np.nan]), (0.0, 1.0))[0] == 256
    with pytest.raises(SpinlockError, match="unknown colormap 'nope'"):
        colormap_lut("nope")


def test_heatmap_limits_fixed_over_the_clip_not_per_frame():
    # frame 0 spans [-1, 1], frame 1 spans [-2, 2]: per-frame limits would colour 1.0 and 2.0 alike
    f0 = np.linspace(-1.0, 1.0, 16).reshape(4, 4)
    traj = np.stack([f0, 2.0 * f0])[None, :, None].astype(np.float32)  # [M=1, T=2, C=1, 4, 4]
    (panel,) = heatmap_panels(traj, "viridis", percentile=0.0)
    lut = colormap_lut("viridis")
    # symmetric clip-wide limits (-2, 2): value 1 -> bin rint(0.75 * 255) = 191, value 2 -> 255
    np.testing.assert_array_equal(panel.pixels[0, 3, 3], lut[191])
    np.testing.assert_array_equal(panel.pixels[1, 3, 3], lut[255])
    np.testing.assert_array_equal(panel.pixels[1, 0, 0], lut[0])
    assert panel.label.endswith("r0 c0 ±2")


def test_heatmap_panels_order_and_channel_selection():
    traj = numpy_rng(0, "test", 1).standard_normal((2, 3, 4, 8, 8)).astype(np.float32)
    panels = heatmap_panels(traj, "RdBu_r", 1.0, channels=[3, 1], prefix="op 7 · ")
    assert [_name(p.label) for p in panels] == [
        "op 7 · r0 c3",
        "op 7 · r0 c1",
        "op 7 · r1 c3",
        "op 7 · r1 c1",
    ]
    assert all(p.pixels.shape == (3, 8, 8, 3) for p in panels)
    with pytest.raises(SpinlockError, match="channels"):
        heatmap_panels(traj, "RdBu_r", 1.0, channels=[4])


def test_rgb_mode_maps_channels_to_colour_planes():
    traj = np.zeros((1, 1, 3, 2, 2), np.float32)
    traj[0, 0, 0] = [[0, 1], [0, 1]]  # R ramps in x
    traj[0, 0, 2] = [[0, 0], [1, 1]]  # B ramps in y
    (panel,) = rgb_panels(traj, percentile=0.0)
    px = panel.pixels[0]
    np.testing.assert_array_equal(px[:, :, 0], [[0, 255], [0, 255]])
    np.testing.assert_array_equal(px[:, :, 2], [[0, 0], [255, 255]])
    with pytest.raises(SpinlockError, match="rgb mode needs exactly 3 channels"):
        rgb_panels(np.zeros((1, 1, 2, 2, 2), np.float32), 1.0)
    lims = [(0.0, 1.0)] * 3
    bad = np.full((3, 1, 1), np.nan)
    np.testing.assert_array_equal(channels_to_rgb(bad, lims)[0, 0], NAN_RGB)


@pytest.mark.parametrize("c", range(1, 9))
def test_pca_mode_handles_any_channel_count(c):
    rng = numpy_rng(0, "test.pca", c)
    traj = rng.standard_normal((2, 3, c, 8, 8)).astype(np.float32)
    traj[0, 1, :, 0, 0] = np.nan  # a NaN pixel stays grey
    panels = render_panels(traj, "pca", "RdBu_r", 1.0)
    assert len(panels) == 2
    px = np.stack([p.pixels for p in panels])
    assert px.shape == (2, 3, 8, 8, 3) and px.dtype == np.uint8
    assert px.reshape(-1, 3).astype(float).var(axis=0).sum() > 0
    np.testing.assert_array_equal(px[0, 1, 0, 0], NAN_RGB)
    if c == 1:
        assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    if c == 2:
        assert (np.delete(px.reshape(-1, 3), 0, axis=0)[:, 2] == 128).all()
    np.testing.assert_array_equal(px[1], render_panels(traj, "pca", "RdBu_r", 1.0)[1].pixels)  # deterministic


def test_pca_recovers_dominant_direction_and_fixes_sign():
    rng = numpy_rng(0, "test.pca.axes")
    z = rng.standard_normal((3, 4000)) * np.array([[3.0], [2.0], [1.0]])
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    x = (q @ z).reshape(3, 40, 100)  # [C, H, W]
    mean, comps, ratio = pca_basis(x)
    assert ratio == pytest.approx(np.array([9, 4, 1]) / 14, abs=0.03)
    for i in range(3):
        assert abs(comps[i] @ q[:, i]) > 0.99
        assert comps[i][np.abs(comps[i]).argmax()] > 0
    _, comps_neg, _ = pca_basis(-x)
    np.testing.assert_allclose(np.abs(comps_neg), np.abs(comps), atol=1e-9)
    rgb = pca_rgb(x, 1.0).reshape(-1, 3).astype(float)
    assert np.corrcoef(rgb[:, 0], z[0] * np.sign(comps[0] @ q[:, 0]))[0, 1] > 0.95


def test_radial_spectrum_peak_and_parseval():
    n = 32
    xs = np.arange(n) / n
    field = np.sin(2 * np.pi * 5 * xs)[None, :] * np.ones((n, 1))  # energy mean(x^2) = 0.5 at |k| = 5
    k, p = radial_power_spectrum(field[None])
    assert k.tolist() == list(range(n // 2 + 1))
    assert int(np.argmax(p[0])) == 5
    ky, kx = np.meshgrid(np.fft.fftfreq(n, 1 / n), np.fft.fftfreq(n, 1 / n), indexing="ij")
    shell = int((np.rint(np.hypot(ky, kx)) == 5).sum())
    assert p[0, 5] * shell == pytest.approx(0.5)
    assert np.delete(p[0], 5).max() < 1e-20


def test_realization_stats_and_aggregate_panels():
    rng = numpy_rng(0, "test.agg")
    traj = rng.standard_normal((4, 3, 2, 8, 8)).astype(np.float32)
    mean, var = realization_stats(traj)
    np.testing.assert_allclose(mean, traj.mean(0), atol=1e-6)
    np.testing.assert_allclose(var, traj.var(0), atol=1e-6)
    assert (realization_stats(traj[:1])[1] == 0).all()
    panels = aggregate_panels(traj, "heatmap", "RdBu_r", 1.0, [1, 0], prefix="op 3 · ")
    assert [_name(p.label) for p in panels] == [
        "op 3 · c1 mean",
        "op 3 · c1 var",
        "op 3 · c0 mean",
        "op 3 · c0 var",
    ]
    # rgb / pca: mean in that mode + variance summed over the shown channels (magma, 0 at the bottom)
    two = np.zeros((2, 1, 3, 2, 2), np.float32)
    two[1, 0, :, 0, 0] = [2.0, 2.0, 2.0]  # realization spread only at pixel (0, 0): var 1 per channel
    mean_p, var_p = aggregate_panels(two, "pca", "RdBu_r", 0.0, prefix="op 1 · ")
    assert mean_p.label.startswith("op 1 · mean pca") and var_p.label == "op 1 · total var [0, 3]"
    lut = colormap_lut("magma")
    np.testing.assert_array_equal(var_p.pixels[0, 0, 0], lut[255])
    np.testing.assert_array_equal(var_p.pixels[0, 1, 1], lut[0])
    (_, var_rgb) = aggregate_panels(two, "rgb", "RdBu_r", 0.0, channels=[0, 1, 2])
    assert var_rgb.label == "total var [0, 3]"


def test_canvas_places_panels_exactly_and_pads_to_blocks():
    rng = numpy_rng(0, "test.canvas")
    traj = rng.standard_normal((2, 5, 1, 10, 12)).astype(np.float32)
    panels = render_panels(traj, "heatmap", "viridis", 1.0)
    canvas = ClipCanvas(panels, [0, 2, 4, 6, 8], title="demo", scale=3, ncols=2)
    assert len(canvas) == 5
    frames = list(canvas)
    assert frames[0].shape == (canvas.height, canvas.width, 3)
    assert canvas.height % BLOCK == 0 and canvas.width % BLOCK == 0
    for i, p in enumerate(panels):
        y0, x0, y1, x1 = canvas.panel_box(i)
        np.testing.assert_array_equal(frames[4][y0:y1, x0:x1], np.repeat(np.repeat(p.pixels[4], 3, 0), 3, 1))
    # only the panels and the step counter change between frames; labels are drawn (not blank)
    diff = (frames[0] != frames[1]).any(axis=-1)
    assert diff[: canvas.title_h].any()
    assert frames[0][: canvas.title_h].min() < 100
    with pytest.raises(ValueError, match="step labels"):
        ClipCanvas(panels, [0, 1], title="x")
    assert default_ncols(16, 1) == 4 and default_ncols(32, 2) == 6 and default_ncols(3, 3) == 3

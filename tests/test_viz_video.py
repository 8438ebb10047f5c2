"""Video and image writers: files decode back with the right frame count, size and pixels."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from spinlock.errors import SpinlockError
from spinlock.viz.colors import apply_colormap
from spinlock.viz.video import (
    frame_grid,
    grid_indices,
    parse_formats,
    write_gif,
    write_mp4,
    write_png,
    write_png_frames,
)


def _frames(t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving gradients (codec-friendly) [T, H, W, 3] uint8."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.stack(
        [np.stack([(xx * 5 + 20 * i) % 256, (yy * 7) % 256, np.full_like(xx, 40 * i)], -1) for i in range(t)]
    )
    return out.astype(np.uint8)


def test_gif_round_trip(tmp_path):
    x = np.linspace(-1.0, 1.0, 48)
    y = np.linspace(-1.0, 1.0, 32)
    fields = [np.sin(3 * x[None, :] + 0.4 * t) * np.cos(2 * y[:, None]) for t in range(6)]
    frames = np.stack([apply_colormap(f, "RdBu_r", (-1.0, 1.0)) for f in fields])  # 256 colours
    p = write_gif(frames, tmp_path / "a.gif", fps=10)
    back = iio.imread(p, index=None)[..., :3].astype(int)
    assert back.shape == (6, 32, 48, 3)
    assert back.var() > 0
    # one 255-colour palette for the clip: close to the 256-colour original, same colour in every frame
    err = np.abs(back - frames.astype(int))
    assert err.mean() < 2.0 and err.max() <= 12
    same = (frames[0] == frames[5]).all(axis=-1)
    assert (back[0][same] == back[5][same]).all()
    assert iio.immeta(p, index=0)["duration"] == 100
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "empty.gif", fps=10)


def test_mp4_round_trip(tmp_path):
    frames = _frames(t=12)
    p = write_mp4(iter(frames), tmp_path / "a.mp4", fps=8)
    back = np.stack(list(iio.imiter(p, plugin="FFMPEG")))
    assert back.shape == (12, 32, 48, 3)
    assert iio.immeta(p, plugin="FFMPEG")["fps"] == pytest.approx(8)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12


def test_png_frames_are_lossless(tmp_path):
    frames = _frames(t=3)
    paths = write_png_frames(iter(frames), tmp_path / "frames")
    assert [p.name for p in paths] == ["frame-00000.png", "frame-00001.png", "frame-00002.png"]
    for p, f in zip(paths, frames, strict=True):
        np.testing.assert_array_equal(iio.imread(p), f)


def test_frame_grid_and_indices(tmp_path):
    frames = list(_frames(t=5, h=4, w=6))
    g = frame_grid(frames, ncols=2, gap=1)
    assert g.shape == (3 * 5 - 1, 2 * 7 - 1, 3)
    np.testing.assert_array_equal(g[5:9, 7:13], frames[3])
    np.testing.assert_array_equal(iio.imread(write_png(g, tmp_path / "g.png")), g)
    assert grid_indices(128, 8) == [0, 18, 36, 54, 73, 91, 109, 127]
    assert grid_indices(3, 8) == [0, 1, 2] and grid_indices(5, 1) == [4]
    with pytest.raises(ValueError, match="uint8"):
        write_png(np.zeros((4, 4, 3), np.float32), tmp_path / "bad.png")


def test_parse_formats():
    assert parse_formats("gif, MP4,gif") == ["gif", "mp4"]
    with pytest.raises(SpinlockError, match="avi"):
        parse_formats("gif,avi")

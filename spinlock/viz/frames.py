"""Turn one operator's rollout into coloured pixel stacks ("panels") in one of three render modes.

* ``heatmap``: one panel per (realization, channel) through a colormap. Limits are robust percentiles
  over every rendered frame and realization of that operator and channel, so they are fixed for the
  whole clip; when they straddle 0 they are made symmetric so a diverging colormap centres on 0.
* ``rgb``: three chosen channels → R, G, B, each with its own clip-wide robust limits.
* ``pca``: the C channel values of every pixel of the clip are projected on their top principal
  components (one fit per operator over all realizations and frames, so colours are comparable across
  frames), each component stretched to its clip-wide robust limits. C ≥ 3: PC1..PC3 → R, G, B.
  C = 2: PC1 → R, PC2 → G, B fixed at mid level (128). C = 1: PC1 (the centred channel) as grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from spinlock.errors import SpinlockError
from spinlock.viz.colors import Limits, apply_colormap, channels_to_rgb, format_limits, normalize, robust_limits

RenderMode = Literal["heatmap", "rgb", "pca"]
RENDER_MODES: tuple[str, ...] = get_args(RenderMode)

_PCA_FIT_MAX_PIXELS = 1 << 20  # pixels used to fit the projection (a regular subsample beyond this)


@dataclass(frozen=True)
class Panel:
    """One tile of a rendered clip: ``pixels`` uint8 [T, h, w, 3] and the text drawn above it."""

    label: str
    pixels: np.ndarray


def clip_limits(x: np.ndarray, percentile: float) -> Limits:
    """Robust limits over a whole clip; symmetric around 0 when the data has both signs."""
    lo, hi = robust_limits(x, percentile)
    if lo < 0.0 < hi:
        return robust_limits(x, percentile, symmetric=True)
    return (lo, hi)


def heatmap_panels(
    traj: np.ndarray,
    cmap: str,
    percentile: float,
    channels: Sequence[int] | None = None,
    prefix: str = "",
) -> list[Panel]:
    """Panels for ``traj`` [M, T, C, H, W]: realization-major, one per (realization, channel)."""
    m, _, c = traj.shape[:3]
    chans = _check_channels(channels, c)
    lims = {ch: clip_limits(traj[:, :, ch], percentile) for ch in chans}
    return [
        Panel(
            f"{prefix}r{r} c{ch} {format_limits(lims[ch])}",
            apply_colormap(traj[r, :, ch], cmap, lims[ch]),
        )
        for r in range(m)
        for ch in chans
    ]


def rgb_panels(
    traj: np.ndarray, percentile: float, channels: Sequence[int] | None = None, prefix: str = ""
) -> list[Panel]:
    """Panels for ``traj`` [M, T, C, H, W]: one per realization, three channels as R, G, B."""
    c = traj.shape[2]
    chans = shown_channels("rgb", channels, c)
    if len(chans) != 3:
        raise SpinlockError(
            f"rgb mode needs exactly 3 channels, got {len(chans)} (dataset has C={c});"
            " pass --channels a,b,c or use --mode pca / heatmap"
        )
    sel = traj[:, :, chans]
    lims = [robust_limits(sel[:, :, i], percentile) for i in range(3)]
    tag = ",".join(str(ch) for ch in chans)
    return [Panel(f"{prefix}r{r} rgb({tag})", channels_to_rgb(sel[r], lims)) for r in range(traj.shape[0])]


def pca_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal axes of the channel vectors of ``x`` [..., C, H, W].

    Returns ``(mean [C], components [k, C], explained_variance_ratio [k])`` with ``k = min(C, 3)``.
    Signs are fixed (largest-magnitude loading positive) so the colouring is deterministic.
    """
    c = x.shape[-3]
    v = np.moveaxis(np.asarray(x, dtype=np.float64), -3, -1).reshape(-1, c)
    v = v[np.isfinite(v).all(axis=1)]
    if v.shape[0] > _PCA_FIT_MAX_PIXELS:
        v = v[:: -(-v.shape[0] // _PCA_FIT_MAX_PIXELS)]
    k = min(c, 3)
    if v.shape[0] == 0:
        return np.zeros(c), np.eye(c)[:k], np.zeros(k)
    mean = v.mean(axis=0)
    cov = np.cov(v - mean, rowvar=False, bias=True).reshape(c, c)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:k]
    comps = evecs[:, order].T
    flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps *= np.where(flip == 0, 1.0, flip)[:, None]
    total = float(evals.clip(min=0).sum())
    ratio = evals[order].clip(min=0) / total if total > 0 else np.zeros(k)
    return mean, comps, ratio


def pca_rgb(x: np.ndarray, percentile: float) -> np.ndarray:
    """Colour ``x`` [..., C, H, W] by its channel principal components → uint8 [..., H, W, 3].

    See the module docstring for C = 1 and C = 2. Pixels with any non-finite channel are NaN-grey.
    """
    mean, comps, _ = pca_basis(x)
    xm = np.moveaxis(np.asarray(x, dtype=np.float32), -3, -1) - mean.astype(np.float32)
    scores = xm @ comps.T.astype(np.float32)  # [..., H, W, k]
    k = comps.shape[0]
    planes = []
    for i in range(k):
        s = scores[..., i]
        planes.append(normalize(s, robust_limits(s, percentile, symmetric=True)))
    if k == 1:
        planes = planes * 3
    elif k == 2:
        planes.append(np.full_like(planes[0], 128.0 / 255.0))
    y = np.stack(planes, axis=-1)
    bad = ~np.isfinite(y).all(axis=-1)
    out = np.rint(np.nan_to_num(y) * 255.0).astype(np.uint8)
    out[bad] = (128, 128, 128)
    return out


def pca_panels(traj: np.ndarray, percentile: float, prefix: str = "") -> list[Panel]:
    """Panels for ``traj`` [M, T, C, H, W]: one per realization, one projection fitted on all of them."""
    _, _, ratio = pca_basis(traj)
    rgb = pca_rgb(traj, percentile)
    var = "+".join(f"{100 * r:.0f}" for r in ratio)
    return [Panel(f"{prefix}r{r} pca {var}%", rgb[r]) for r in range(traj.shape[0])]


def render_panels(
    traj: np.ndarray,
    mode: str,
    cmap: str,
    percentile: float,
    channels: Sequence[int] | None = None,
    prefix: str = "",
) -> list[Panel]:
    """Dispatch on ``mode`` (one of :data:`RENDER_MODES`) for ``traj`` [M, T, C, H, W]."""
    if traj.ndim != 5:
        raise ValueError(f"expected a rollout [M, T, C, H, W], got shape {traj.shape}")
    if mode == "heatmap":
        return heatmap_panels(traj, cmap, percentile, channels, prefix)
    if mode == "rgb":
        return rgb_panels(traj, percentile, channels, prefix)
    if mode == "pca":
        if channels is not None:
            traj = traj[:, :, _check_channels(channels, traj.shape[2])]
        return pca_panels(traj, percentile, prefix)
    raise SpinlockError(f"unknown render mode {mode!r}; expected one of {list(RENDER_MODES)}")


def shown_channels(mode: str, channels: Sequence[int] | None, c: int) -> list[int]:
    """Channels a mode displays out of C: the given ones, else all (rgb: the first three)."""
    if channels is not None:
        return _check_channels(channels, c)
    return list(range(min(c, 3))) if mode == "rgb" else list(range(c))


def _check_channels(channels: Sequence[int] | None, c: int) -> list[int]:
    if channels is None:
        return list(range(c))
    chans = [int(ch) for ch in channels]
    bad = [ch for ch in chans if not 0 <= ch < c]
    if bad or not chans or len(set(chans)) != len(chans):
        raise SpinlockError(f"channels {chans} invalid for C={c}: need distinct indices in [0, {c - 1}]")
    return chans

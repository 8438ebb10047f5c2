"""Aggregate views of one operator over its realizations: mean, variance and power spectra over time.

For a rollout ``u`` [M, T, C, H, W]: the realization mean ``E_m u`` and variance ``Var_m u`` (population,
so M = 1 gives exactly 0) are fields over time; the radially averaged spatial power spectrum
``P(k, t)`` is averaged over realizations (the spectrum of each realization, not of the mean field, so
stochastic small scales are kept).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from spinlock.viz.colors import FIELD_CMAP, POSITIVE_CMAP, apply_colormap, format_limits, variance_limits
from spinlock.viz.frames import Panel, clip_limits, render_panels, shown_channels
from spinlock.viz.video import grid_indices


def radial_power_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of periodic fields ``x`` [..., H, W].

    ``P(k)`` is the mean of ``|FFT(x)|^2 / (H W)^2`` over the modes with ``round(|(k_x, k_y)|) = k``
    (integer wavenumbers, cycles per domain), for ``k = 0 .. min(H, W) // 2``; corner modes beyond are
    dropped. With this scaling ``sum`` over *all* modes equals ``mean(x^2)`` (Parseval).
    Returns ``(k [K], P [..., K])``.
    """
    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape[-2:]
    power = np.abs(np.fft.fft2(x)) ** 2 / float(h * w) ** 2
    ky = np.fft.fftfreq(h, d=1.0 / h)
    kx = np.fft.fftfreq(w, d=1.0 / w)
    kr = np.rint(np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)).astype(np.int64).ravel()
    n_k = min(h, w) // 2 + 1
    keep = kr < n_k
    onehot = np.zeros((h * w, n_k))
    onehot[np.flatnonzero(keep), kr[keep]] = 1.0
    onehot /= onehot.sum(axis=0, keepdims=True)
    flat = power.reshape(-1, h * w)
    spec = (flat @ onehot).reshape(*x.shape[:-2], n_k)
    return np.arange(n_k, dtype=np.float64), spec


def realization_stats(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Realization mean and (population) variance of ``traj`` [M, T, C, H, W] → two [T, C, H, W]."""
    t = np.asarray(traj, dtype=np.float32)
    return t.mean(axis=0), t.var(axis=0)


def aggregate_panels(
    traj: np.ndarray,
    mode: str,
    cmap: str,
    percentile: float,
    channels: Sequence[int] | None = None,
    prefix: str = "",
) -> list[Panel]:
    """Animated realization mean and variance panels of ``traj`` [M, T, C, H, W] in render ``mode``.

    heatmap: per channel a mean panel (``cmap``) and a variance panel (:data:`POSITIVE_CMAP`).
    rgb / pca: the mean rendered in that mode and the variance summed over the shown channels.
    """
    mean, var = realization_stats(traj)
    if mode == "heatmap":
        panels = []
        for ch in shown_channels(mode, channels, traj.shape[2]):
            lim = clip_limits(mean[:, ch], percentile)
            vlim = variance_limits(var[:, ch], percentile)
            panels.append(Panel(f"{prefix}c{ch} mean {format_limits(lim)}", apply_colormap(mean[:, ch], cmap, lim)))
            panels.append(
                Panel(f"{prefix}c{ch} var {format_limits(vlim)}", apply_colormap(var[:, ch], POSITIVE_CMAP, vlim))
            )
        return panels
    (m,) = render_panels(mean[None], mode, cmap, percentile, channels)
    total = var[:, shown_channels(mode, channels, traj.shape[2])].sum(axis=1)  # [T, H, W]
    vlim = variance_limits(total, percentile)
    return [
        Panel(f"{prefix}mean {m.label.split(' ', 1)[1]}", m.pixels),
        Panel(f"{prefix}total var {format_limits(vlim)}", apply_colormap(total, POSITIVE_CMAP, vlim)),
    ]


def snapshot_strip(fields: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Coloured fields [H, W, 3] side by side with grey gaps → uint8 [H, n·(W+gap)-gap, 3]."""
    h, w, _ = fields[0].shape
    out = np.full((h, len(fields) * (w + gap) - gap, 3), 160, np.uint8)
    for i, f in enumerate(fields):
        out[:, i * (w + gap) : i * (w + gap) + w] = f
    return out


def plot_aggregate(
    traj: np.ndarray,
    steps: Sequence[int],
    channels: Sequence[int],
    title: str,
    percentile: float = 1.0,
    snapshots: int = 4,
    cmap: str = FIELD_CMAP,
) -> Figure:
    """Static aggregate panel of one operator, one row per channel: realization-mean snapshots and
    variance snapshots at the same steps (one strip, limits in the title) and the power spectrum over
    time (log-log, colour = step).

    ``traj`` [M, T, C, H, W], ``steps`` [T] simulation steps of the frames. The snapshots are coloured
    through the LUTs of :mod:`spinlock.viz.colors` and drawn as one image per row, which keeps the
    figure cheap (a few axes, no layout solver) even for many channels.
    """
    mean, var = realization_stats(traj)
    idx = grid_indices(len(steps), snapshots)
    k, spec = radial_power_spectrum(traj)  # [M, T, C, K]
    with warnings.catch_warnings():  # a diverged operator's frames are all-NaN: mean stays NaN, not shown
        warnings.simplefilter("ignore", RuntimeWarning)
        spec = np.nanmean(np.where(np.isfinite(spec), spec, np.nan), axis=0)  # [T, C, K]
    h, w = traj.shape[-2:]
    gap = max(1, w // 16)
    n_snap = 2 * len(idx)
    strip_w = n_snap * (w + gap) - gap
    fig_w = 9.5
    row_h = max(1.35, fig_w * 0.68 * h / strip_w + 0.5)
    fig_h = row_h * len(channels) + 0.5
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=10)
    grid = fig.add_gridspec(
        len(channels),
        2,
        width_ratios=[2.6, 1.0],
        left=0.02,
        right=0.9,
        top=1 - 0.45 / fig_h,
        bottom=0.35 / fig_h,
        wspace=0.12,
        hspace=0.55,
    )
    time_cmap = matplotlib.colormaps["viridis"]
    tnorm = Normalize(vmin=float(steps[0]), vmax=float(max(steps[-1], steps[0] + 1)))
    for row, ch in enumerate(channels):
        lim = clip_limits(mean[:, ch], percentile)
        vhi = variance_limits(var[:, ch], percentile)[1]
        tiles = [apply_colormap(mean[t, ch], cmap, lim) for t in idx]
        tiles += [apply_colormap(var[t, ch], POSITIVE_CMAP, (0.0, vhi)) for t in idx]
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(snapshot_strip(tiles, gap), interpolation="nearest")
        ax.set_xticks([i * (w + gap) + w / 2 for i in range(n_snap)], [f"t={steps[t]}" for t in idx] * 2, fontsize=6)
        ax.set_yticks([])
        ax.tick_params(length=0, pad=2)
        ax.set_title(
            f"c{ch}: mean {format_limits(lim)} ({cmap})  |  variance [0, {vhi:.3g}] ({POSITIVE_CMAP})",
            fontsize=7,
        )
        ax = fig.add_subplot(grid[row, 1])
        ts = grid_indices(len(steps), 16)
        p = spec[ts, ch, 1:]  # [16, K-1]
        ok = np.isfinite(p) & (p > 0)
        segs = [np.column_stack([k[1:][o], q[o]]) for q, o in zip(p, ok, strict=True) if o.any()]
        if segs:  # one LineCollection instead of a line per step: far fewer artists to lay out
            lc = LineCollection(segs, cmap=time_cmap, norm=tnorm, linewidths=1.0)
            lc.set_array(np.asarray([steps[t] for t, o in zip(ts, ok, strict=True) if o.any()], dtype=float))
            ax.add_collection(lc)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(k[1] * 0.9, k[-1] * 1.1)
            lo, hi = float(p[ok].min()), float(p[ok].max())
            ax.set_ylim(lo / 1.5, hi * 1.5 if hi > lo else lo * 10)
        ax.set_xlabel("wavenumber k", fontsize=6, labelpad=1)
        ax.set_ylabel("P(k)", fontsize=6, labelpad=1)
        ax.tick_params(labelsize=5)
        ax.minorticks_off()  # log-axis minor ticks cost more to build than the rest of the figure
        ax.set_title(f"power spectrum c{ch} (colour = step)", fontsize=7)
    cax = fig.add_axes((0.93, 0.35 / fig_h, 0.012, 1 - 0.9 / fig_h))
    fig.colorbar(ScalarMappable(norm=tnorm, cmap=time_cmap), cax=cax).set_label("step", fontsize=6)
    cax.tick_params(labelsize=5)
    return fig

"""Render groups of operators from a run: grid clips (GIF / MP4 / PNG frames / PNG grid) and
per-operator aggregate panels (realization mean, variance, power spectrum over time).

One operator's rollout is loaded at a time (read from ``/trajectories`` or replayed) and reduced to
uint8 panels before the next is loaded, so memory stays at the size of the coloured clip.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from spinlock.config.strict import Strict
from spinlock.errors import SpinlockError
from spinlock.viz.aggregate import aggregate_panels, plot_aggregate
from spinlock.viz.canvas import ClipCanvas, default_ncols
from spinlock.viz.colors import FIELD_CMAP, colormap_lut
from spinlock.viz.frames import RenderMode, render_panels, shown_channels
from spinlock.viz.rundata import RunData
from spinlock.viz.select import Group
from spinlock.viz.video import (
    VideoFormat,
    frame_grid,
    grid_indices,
    write_gif,
    write_mp4,
    write_png,
    write_png_frames,
)

MIN_PANEL_PX = 128
"""Automatic ``scale`` makes every panel at least this many pixels wide."""


class RenderOptions(Strict):
    """How rollouts are rendered (the ``spinlock visualize`` rendering flags)."""

    mode: RenderMode = "heatmap"
    cmap: str = FIELD_CMAP
    """Colormap of heatmap mode and of the realization-mean panels."""
    channels: tuple[int, ...] | None = None
    """Channels shown (heatmap: one panel each; rgb: exactly 3; pca: the projected subset). None: all."""
    realizations: int = Field(1, ge=1)
    """The first R realizations are shown side by side (capped at M)."""
    last_step: int | None = Field(None, ge=0)
    """Last simulation step rendered (None: the final step)."""
    stride: int | None = Field(None, ge=1)
    """Simulation steps between frames (None: every stored step, or every step when replaying)."""
    percentile: float = Field(1.0, ge=0.0, lt=50.0)
    """Colour limits at the percentile / 100 - percentile of the whole clip."""
    formats: tuple[VideoFormat, ...] = ("gif", "mp4", "grid")
    fps: float = Field(10.0, gt=0.0, le=60.0)
    scale: int | None = Field(None, ge=1, le=32)
    """Integer upscaling of panels (nearest neighbour). None: enough for MIN_PANEL_PX."""
    grid_frames: int = Field(8, ge=1, le=64)
    """Frames in the ``grid`` PNG (evenly spaced, first and last included)."""
    aggregate: bool = True
    """Also write the aggregate clip and one aggregate PNG per operator."""

    @field_validator("cmap")
    @classmethod
    def _known_cmap(cls, v: str) -> str:
        colormap_lut(v)  # raises a SpinlockError naming the colormap
        return v


def _scale(opts: RenderOptions, width: int) -> int:
    return opts.scale or max(1, math.ceil(MIN_PANEL_PX / max(1, width)))


def write_clip(canvas: ClipCanvas, stem: Path, opts: RenderOptions) -> list[Path]:
    """Write ``canvas`` in every requested format next to ``stem`` (``stem.gif``, ``stem.mp4``, ...)."""
    paths: list[Path] = []
    for fmt in opts.formats:
        if fmt == "gif":
            paths.append(write_gif(canvas, stem.with_suffix(".gif"), opts.fps))
        elif fmt == "mp4":
            paths.append(write_mp4(iter(canvas), stem.with_suffix(".mp4"), opts.fps))
        elif fmt == "png":
            paths += write_png_frames(iter(canvas), stem.parent / f"{stem.name}-frames")
        elif fmt == "grid":
            frames = [canvas.frame(t) for t in grid_indices(len(canvas), opts.grid_frames)]
            ncols = max(1, min(len(frames), round(math.sqrt(len(frames) * canvas.height / canvas.width))))
            paths.append(write_png(frame_grid(frames, ncols=ncols), stem.parent / f"{stem.name}-grid.png"))
    return paths


def render_group(run: RunData, group: Group, out_dir: Path, opts: RenderOptions) -> list[Path]:
    """Render one group: ``<name>.{gif,mp4}``, ``<name>-grid.png``, ``<name>-frames/``, and with
    ``aggregate`` ``<name>-aggregate.*`` plus ``<name>-op<I>-aggregate.png`` per operator."""
    if not group.rows:
        raise SpinlockError(f"selection {group.name!r} is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = run.frame_steps(opts.last_step, opts.stride)
    m = min(opts.realizations, run.realizations or 1)
    reals = list(range(m))
    panels, agg, paths = [], [], []
    for row, label in zip(group.rows, group.labels, strict=True):
        # statistics over every realization, display of the first ``m``: [M, T', C, H, W]
        traj = run.trajectory(row, steps, None if opts.aggregate else reals)
        chans = shown_channels(opts.mode, opts.channels, traj.shape[2])
        panels += render_panels(traj[:m], opts.mode, opts.cmap, opts.percentile, opts.channels, f"{label} · ")
        if opts.aggregate:
            agg += aggregate_panels(traj, opts.mode, opts.cmap, opts.percentile, opts.channels, f"{label} · ")
            fig = plot_aggregate(
                traj,
                steps.tolist(),
                chans,
                f"{label}: aggregate over {traj.shape[0]} realization(s)",
                opts.percentile,
                cmap=opts.cmap,
            )
            p = out_dir / f"{group.name}-op{int(run.operator_index[row])}-aggregate.png"
            fig.savefig(p)
            paths.append(p)
    per_op = len(panels) // len(group.rows)
    width = panels[0].pixels.shape[2]
    canvas = ClipCanvas(
        panels,
        steps.tolist(),
        f"{group.title} · {opts.mode}",
        ncols=default_ncols(len(panels), per_op),
        scale=_scale(opts, width),
    )
    paths = write_clip(canvas, out_dir / group.name, opts) + paths
    if agg:
        per_op = len(agg) // len(group.rows)
        canvas = ClipCanvas(
            agg,
            steps.tolist(),
            f"{group.title} · mean / var",
            ncols=default_ncols(len(agg), per_op),
            scale=_scale(opts, width),
        )
        paths += write_clip(canvas, out_dir / f"{group.name}-aggregate", opts)
    return paths


def last_frames(
    run: RunData, rows: list[int], mode: str, cmap: str, percentile: float, step: int | None = None
) -> list[np.ndarray]:
    """One uint8 [H, W, 3] frame per row (realization 0 at ``step``, default the final step) in ``mode``.

    Heatmap mode shows channel 0. Used by dashboards that need a still per operator.
    """
    t = run.frame_steps()[-1] if step is None else int(step)
    out = []
    for r in rows:
        traj = run.trajectory(r, [t], [0])
        chans = (0,) if mode == "heatmap" else None
        out.append(render_panels(traj, mode, cmap, percentile, chans)[0].pixels[0])
    return out


def default_mode(channels: int) -> RenderMode:
    """The report's render mode for C channels: heatmap for C = 1, rgb for C = 3, pca otherwise."""
    return "heatmap" if channels == 1 else "rgb" if channels == 3 else "pca"

"""Behaviour-census figure: class counts, and class fractions per sampled-parameter bin.

Each sampled parameter becomes a panel of 100 % stacked bars, one bar per choice value (or integer
value, or boolean) and, for continuous parameters, one per quarter of the Sobol coordinate, i.e. four
equal bins on the parameter's own linear or log scale. Panels are ordered by the mutual information
between the bin and the class, so the parameters whose ranges decide the behaviour come first.
A second figure shows a few operators of each behaviour class: IC and final state, so the classes can be
checked by eye.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from spinlock.features.census import CLASSES, CODE, NAMES
from spinlock.rng import numpy_rng
from spinlock.storage.rows import read_table
from spinlock.viz.colors import FIELD_CMAP, apply_colormap, channels_to_rgb, robust_limits
from spinlock.viz.rundata import RunData

CLASS_COLORS = {
    "fault": "#000000",
    "diverged": "#d62728",
    "undetermined": "#bbbbbb",
    "collapsed": "#8c564b",
    "noise_dominated": "#ff7f0e",
    "grid_scale": "#e6c200",
    "structured": "#2ca02c",
}
CONTINUOUS_BINS = 4
MAX_LEVELS = 6
"""Integer parameters with more distinct values than this are binned like continuous ones."""
PARAMETER_GROUP_BYTES = 64 << 20
"""Parameter columns read at once (float64, each table): all 15 of the baseline up to ≈ 560K operators."""
assert set(CLASS_COLORS) == set(NAMES)


@dataclass(frozen=True)
class ParameterBins:
    """``bin`` [N] int16 index into ``labels`` (-1: no value) for parameter ``name``."""

    name: str
    labels: list[str]
    bin: np.ndarray


def _fmt(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 1e4 else f"{v:.1e}"


def parameter_bins(f: h5py.File, specs: dict[str, Any]) -> list[ParameterBins]:
    """Bins of every sampled parameter with more than one value; ``specs`` is the config's ``parameters``.

    The [N, P] tables are read a group of :data:`PARAMETER_GROUP_BYTES` columns at a time, so they are
    never in memory whole and a merged run's shard files are opened once per group, not per parameter.
    """
    if "parameters/values" not in f:
        return []
    ds = f["parameters/values"]
    unit_ds = f["parameters/unit"] if "parameters/unit" in f else None
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in ds.attrs["names"]]
    raw = ds.attrs.get("choices", "{}")
    choices = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    group = max(1, PARAMETER_GROUP_BYTES // max(1, 8 * ds.shape[0]))
    out = []
    for g in range(0, len(names), group):
        cols = list(range(g, min(g + group, len(names))))
        values = read_table(ds, cols=cols)
        units = read_table(unit_ds, cols=cols) if unit_ds is not None else None
        for k, j in enumerate(cols):
            if (b := _bins(names[j], values[:, k], None if units is None else units[:, k], specs, choices)):
                out.append(b)
    return out


def _bins(name: str, v: np.ndarray, u: np.ndarray | None, specs: dict[str, Any], choices: dict[str, list]
          ) -> ParameterBins | None:
    """The bins of one parameter's values ``v`` [N] (``u``: its Sobol coordinates), None when fixed."""
    finite = np.isfinite(v)
    distinct = np.unique(v[finite])
    if distinct.size < 2:
        return None  # fixed parameter: nothing to break down
    kind = (specs.get(name) or {}).get("type")
    b = np.full(len(v), -1, np.int16)
    if name in choices:
        labels = [str(c) for c in choices[name]]
        b[finite] = v[finite].astype(np.int64)
    elif kind == "boolean":
        labels = ["false", "true"]
        b[finite] = (v[finite] > 0.5).astype(np.int64)
    elif distinct.size <= MAX_LEVELS:
        labels = [_fmt(x) for x in distinct]
        b[finite] = np.searchsorted(distinct, v[finite])
    else:
        # quarters of the Sobol coordinate = equal bins on the parameter's own (linear/log) scale
        u = u if u is not None else (np.argsort(np.argsort(v)) + 0.5) / len(v)
        b[finite] = np.clip((u[finite] * CONTINUOUS_BINS).astype(np.int64), 0, CONTINUOUS_BINS - 1)
        labels = []
        for k in range(CONTINUOUS_BINS):
            inside = v[b == k]
            labels.append(f"{_fmt(inside.min())}–{_fmt(inside.max())}" if inside.size else "(empty)")
    return ParameterBins(name, labels, b)


def mutual_information(codes: np.ndarray, b: np.ndarray) -> float:
    """I(class; bin) in bits over the operators with a bin (plug-in estimate)."""
    keep = b >= 0
    joint = np.zeros((int(b.max()) + 1, len(CLASSES)))
    np.add.at(joint, (b[keep], np.asarray(codes, np.int64)[keep]), 1.0)
    p = joint / max(joint.sum(), 1.0)
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / outer[nz])).sum())


def plot_census(codes: np.ndarray, params: list[ParameterBins], title: str = "behaviour census") -> Figure:
    """Counts per class (top) and, per parameter, the class fractions of each bin (most informative first)."""
    codes = np.asarray(codes, np.int64)
    n = len(codes)
    present = [c for c in CLASSES if (codes == c.code).any()] or list(CLASSES)
    ranked = sorted(params, key=lambda p: -mutual_information(codes, p.bin))
    cols = 4
    rows = math.ceil(len(ranked) / cols)
    fig = Figure(figsize=(12.0, 2.2 + 2.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[1.3] + [2.0] * rows, hspace=0.9, wspace=0.25,
                            left=0.11, right=0.98, top=1 - 0.45 / fig.get_figheight(),
                            bottom=0.75 / fig.get_figheight())
    ax = fig.add_subplot(grid[0, :])
    counts = [int((codes == c.code).sum()) for c in present]
    y = np.arange(len(present))
    ax.barh(y, counts, color=[CLASS_COLORS[c.name] for c in present], edgecolor="#444444", linewidth=0.5)
    ax.set_yticks(y, [c.name for c in present], fontsize=8)
    ax.invert_yaxis()
    for yi, k in zip(y, counts, strict=True):
        ax.text(k, yi, f" {k} ({100 * k / max(n, 1):.1f} %)", va="center", fontsize=8)
    ax.set_xlim(0, max(counts + [1]) * 1.25)
    ax.set_xlabel("operators", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{title}: {n} operators", fontsize=10)
    for i, p in enumerate(ranked):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        k = len(p.labels)
        frac = np.zeros((k, len(CLASSES)))
        sizes = np.zeros(k, np.int64)
        for j in range(k):
            sel = codes[p.bin == j]
            sizes[j] = sel.size
            if sel.size:
                frac[j] = np.bincount(sel, minlength=len(CLASSES)) / sel.size
        bottom = np.zeros(k)
        for c in present:
            ax.bar(np.arange(k), frac[:, c.code], bottom=bottom, color=CLASS_COLORS[c.name], width=0.8)
            bottom += frac[:, c.code]
        ax.set_xticks(np.arange(k), [f"{lab}\n(n={s})" for lab, s in zip(p.labels, sizes, strict=True)],
                      fontsize=6.5, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="y", labelsize=6.5)
        ax.set_title(f"{p.name} (MI {mutual_information(codes, p.bin):.2f} bit)", fontsize=8)
    fig.legend(handles=[Patch(color=CLASS_COLORS[c.name], label=c.name) for c in present], loc="lower center",
               ncol=len(present), fontsize=8, frameon=False)
    return fig


EXAMPLE_CLASSES = ("collapsed", "noise_dominated", "grid_scale", "structured")
"""Classes with a final field worth showing (diverged ones end in NaN)."""


def _image(frames: np.ndarray) -> np.ndarray:
    """[K, C, H, W] → uint8 [K, H, W, 3] with one set of limits for all K frames (rgb for C = 3)."""
    if frames.shape[1] == 3:
        return channels_to_rgb(frames, [robust_limits(frames[:, c]) for c in range(3)])
    return apply_colormap(frames[:, 0], FIELD_CMAP, robust_limits(frames[:, 0], symmetric=True))


def plot_class_examples(run: RunData, codes: np.ndarray, seed: int, per_class: int = 3) -> Figure | None:
    """Per class of :data:`EXAMPLE_CLASSES` present, ``per_class`` operators (seeded draw): the IC and the
    final stored state of realizations 0 and 1, coloured with the operator's limits over all three, so a
    collapse shows as a uniform final field and noise as unrelated realizations. ``None`` without classes."""
    rows = [(name, np.flatnonzero(np.asarray(codes) == CODE[name])) for name in EXAMPLE_CLASSES]
    rows = [(name, r) for name, r in rows if r.size]
    if not rows:
        return None
    last = int(run.simulation_steps or 0)
    m = min(2, run.realizations or 1)
    panels = 1 + m
    fig = Figure(figsize=(1.25 * panels * per_class + 0.9, 1.45 * len(rows) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.9 / fig.get_figwidth(), right=0.99, top=1 - 0.45 / fig.get_figheight(),
                        bottom=0.05, wspace=0.08, hspace=0.35)
    for i, (name, members) in enumerate(rows):
        pick = np.sort(numpy_rng(seed, "viz.census.examples", CODE[name]).choice(
            members, size=min(per_class, members.size), replace=False))
        for j, row in enumerate(pick):
            traj = run.trajectory(int(row), [0, last], list(range(m)))  # [m, 2, C, H, W]
            frames = np.concatenate([traj[:1, 0], traj[:, 1]])
            for k, img in enumerate(_image(frames)):
                ax = fig.add_subplot(len(rows), panels * per_class, i * panels * per_class + j * panels + k + 1)
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                label = f"op {int(run.operator_index[row])} t=0" if k == 0 else f"t={last} r{k - 1}"
                ax.set_title(label, fontsize=6.5)
                if j == 0 and k == 0:
                    ax.set_ylabel(name, fontsize=8)
    fig.suptitle("census classes: IC, then the final state of realizations 0 and 1", fontsize=9)
    return fig

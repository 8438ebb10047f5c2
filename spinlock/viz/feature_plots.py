"""Feature plots: per-family distributions, a correlation heatmap with category blocks, temporal curves.

All statistics use the ok operators (status 0) only: diverged operators carry NaN or meaningless
features and would dominate every axis. Figures are plain :class:`matplotlib.figure.Figure` objects
on the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from spinlock.viz.rundata import CategoryMembers


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def pick_columns(n: int, max_columns: int) -> list[int]:
    """Up to ``max_columns`` column indices evenly spread over ``range(n)`` (all when n is small)."""
    if n <= max_columns:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max_columns)})


def operator_count(n: int, total: int | None) -> str:
    """``N=812``, or ``sample of 20000 of 1000000`` when the rows are a sample of ``total`` operators."""
    return f"N={n}" if total is None or total == n else f"sample of {n} of {total} operators"


def plot_distributions(
    values: np.ndarray, names: Sequence[str], title: str, max_columns: int = 24, bins: int = 30,
    total: int | None = None,
) -> Figure:
    """Histogram grid of (up to ``max_columns`` evenly spaced) columns of ``values`` [N, D] (a sample of
    ``total`` operators when given and larger, said in the title).

    The range of each histogram is :func:`histogram_range` so a few outliers do not squash it; the
    subplot title counts values outside that range and non-finite ones.
    """
    cols = pick_columns(values.shape[1], max_columns)
    ncols = min(6, max(1, len(cols)))
    nrows = max(1, math.ceil(len(cols) / ncols))
    fig = _figure(2.1 * ncols, 1.55 * nrows + 0.5)
    fig.suptitle(f"{title} ({len(cols)} of {values.shape[1]} columns, {operator_count(values.shape[0], total)})",
                 fontsize=9)
    height = 1.55 * nrows + 0.5
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.3 / height, top=1 - 0.45 / height, hspace=0.8)
    for i, j in enumerate(cols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        v = values[:, j]
        fin = v[np.isfinite(v)]
        note = []
        if fin.size:
            lo, hi = histogram_range(fin)
            inside = fin[(fin >= lo) & (fin <= hi)]
            ax.hist(inside, bins=bins, range=(lo, hi if hi > lo else lo + 1e-9), color="#4c72b0")
            if fin.size - inside.size:
                note.append(f"{fin.size - inside.size} out")
        if v.size - fin.size:
            note.append(f"{v.size - fin.size} nan")
        ax.set_title(_short(names[j]) + (f"\n({', '.join(note)})" if note else ""), fontsize=6)
        ax.tick_params(labelsize=5)
        ax.set_yticks([])
    return fig


def histogram_range(v: np.ndarray, fence: float = 3.0) -> tuple[float, float]:
    """Data range clipped to Tukey's far fences ``[Q1 - fence·IQR, Q3 + fence·IQR]`` (finite ``v``)."""
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    return float(max(v.min(), q1 - fence * iqr)), float(min(v.max(), q3 + fence * iqr))


def _short(name: str, width: int = 30) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def spearman(values: np.ndarray) -> np.ndarray:
    """Spearman rank correlation [D, D] over rows finite in every column (rank-based: robust to the
    heavy tails features have). Constant columns get correlation 0 (1 on the diagonal)."""
    x = values[np.isfinite(values).all(axis=1)]
    d = values.shape[1]
    if x.shape[0] < 3:
        return np.eye(d)
    r = rankdata(x, axis=0)
    r = r - r.mean(axis=0)
    norm = np.sqrt((r**2).sum(axis=0))
    ok = norm > 0
    r[:, ok] /= norm[ok]
    c = r.T @ r
    c[~ok, :] = 0.0
    c[:, ~ok] = 0.0
    np.fill_diagonal(c, 1.0)
    return np.clip(c, -1.0, 1.0)


def match_categories(categories: Sequence[CategoryMembers],
                     names: Sequence[str]) -> tuple[list[int], list[tuple[str, int]]]:
    """Column order and ``(category, size)`` blocks for ``names`` grouped by ``categories``.

    A category feature matches a column by its full name, or with a ``family.`` / ``family/`` prefix
    removed from either side. Columns in no category go last as ``other``; unknown features are skipped.
    """
    index: dict[str, int] = {}
    for j, n in enumerate(names):
        index.setdefault(n, j)
        for sep in (".", "/"):
            if sep in n:
                index.setdefault(n.split(sep, 1)[1], j)
    order: list[int] = []
    blocks: list[tuple[str, int]] = []
    for cat in categories:
        cols = []
        for f in cat.features:
            j = index.get(f)
            if j is None:
                for sep in ("/", "."):
                    if sep in f and (j := index.get(f.split(sep, 1)[1])) is not None:
                        break
            if j is not None and j not in order and j not in cols:
                cols.append(j)
        if cols:
            order += cols
            blocks.append((cat.name, len(cols)))
    rest = [j for j in range(len(names)) if j not in set(order)]
    if rest:
        order += rest
        blocks.append(("other", len(rest)))
    return order, blocks


def cluster_order(corr: np.ndarray) -> list[int]:
    """Leaf order of average-linkage clustering on the distance ``1 - |corr|``."""
    if corr.shape[0] < 3:
        return list(range(corr.shape[0]))
    dist = np.clip(1.0 - np.abs(corr), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    return [int(i) for i in leaves_list(linkage(squareform(dist, checks=False), method="average"))]


def plot_correlation(
    values: np.ndarray, names: Sequence[str], categories: Sequence[CategoryMembers] | None, title: str
) -> Figure:
    """Spearman correlation heatmap of ``values`` [N, D]; blocks of ``categories`` outlined and named
    when given (tokenizer categories), otherwise columns in hierarchical-clustering order."""
    corr = spearman(values)
    if categories:
        order, blocks = match_categories(categories, names)
        how = "grouped by tokenizer category"
    else:
        order, blocks = cluster_order(corr), []
        how = "hierarchical-clustering order (no tokenizer categories)"
    c = corr[np.ix_(order, order)]
    d = len(order)
    size = min(10.0, 4.0 + 0.05 * d)  # the matrix, in inches; margins below are in inches too
    labelled = d <= 60
    left = bottom = 1.5 if labelled else 0.3
    top, right = (1.0 if blocks else 0.5), 0.9
    fig = _figure(left + size + right, bottom + size + top)
    w, h = fig.get_size_inches()
    ax = fig.add_axes((left / w, bottom / h, size / w, size / h))
    im = ax.imshow(c, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.suptitle(f"{title}: Spearman correlation, {how}", fontsize=8, y=1 - 0.1 / h, va="top")
    if labelled:
        labels = [_short(names[j], 28) for j in order]
        ax.set_xticks(range(d), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(d), labels, fontsize=5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    start = 0
    for name, n in blocks:
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), n, n, fill=False, edgecolor="black", linewidth=1.0))
        # block names above the matrix (tick labels, when shown, sit left and below)
        ax.text(
            start + n / 2 - 0.5,
            -0.5 - 0.01 * d,
            f"{name} ({n})",
            ha="left",
            va="bottom",
            rotation=30,
            fontsize=6,
            clip_on=False,
        )
        start += n
    cax = fig.add_axes(((left + size + 0.15) / w, bottom / h, 0.15 / w, size / h))
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=6)
    return fig


def plot_temporal(
    values: np.ndarray, names: Sequence[str], steps: np.ndarray, max_columns: int = 9, examples: int = 5,
    total: int | None = None,
) -> Figure:
    """Temporal features ``values`` [N, T', D] over the simulation ``steps`` [T']: per column the median
    over operators, the 10-90 % band and ``examples`` individual operators (thin lines); ``total`` as in
    :func:`plot_distributions`."""
    cols = pick_columns(values.shape[2], max_columns)
    ncols = min(3, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = _figure(3.3 * ncols, 2.2 * nrows + 0.4)
    fig.suptitle(f"temporal features over time ({operator_count(values.shape[0], total)})", fontsize=9)
    height = 2.2 * nrows + 0.4
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.45 / height, top=1 - 0.45 / height, hspace=0.6, wspace=0.3)
    for i, j in enumerate(cols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        v = values[:, :, j]
        with warnings.catch_warnings():  # steps where every operator is NaN leave gaps in the band
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, med, hi = np.nanpercentile(v, [10, 50, 90], axis=0)
        ax.fill_between(steps, lo, hi, color="#4c72b0", alpha=0.25, lw=0, label="10-90 %")
        ax.plot(steps, med, color="#4c72b0", lw=1.5, label="median")
        for r in range(min(examples, v.shape[0])):
            ax.plot(steps, v[r], color="0.3", lw=0.5, alpha=0.6)
        ax.set_title(_short(names[j], 40), fontsize=7)
        ax.set_xlabel("step", fontsize=6)
        ax.tick_params(labelsize=5)
        if i == 0:
            ax.legend(fontsize=5, loc="best")
    return fig

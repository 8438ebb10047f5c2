"""Tokenizer dashboards: training curves, codebook usage and perplexity, category sizes, a 2-D map of
operators coloured by coarse token, and "same token, different operators" rollout stills.

Training metrics come from ``tokenizer/metrics.jsonl`` (one object per epoch; any numeric key is
plotted, ``usage_l<l>`` / ``perplexity_l<l>`` are drawn per level). Final code statistics come from
``/tokens``: for one category and level, ``usage`` is the number of distinct codes used and
``perplexity = exp(H)`` with ``H`` the entropy of the code frequencies (N equally used codes → N); a level
that is not a token position (one code, see spinlock.encoding.layout) shows as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from spinlock.errors import SpinlockError
from spinlock.rng import numpy_rng
from spinlock.viz.render import last_frames
from spinlock.viz.rundata import CategoryMembers, RunData, Tokens, sample_note
from spinlock.viz.select import behaviour_matrix

_LEVEL_KEY = re.compile(r"^(usage|perplexity)_l(\d+)$")
_X_KEYS = ("epoch", "step", "iteration")


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``key → (x, y)`` for every numeric key; x is the record's ``epoch`` (else its position)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records):
        x = next((float(rec[k]) for k in _X_KEYS if _numeric(rec.get(k))), float(i))
        for key, v in rec.items():
            if key in _X_KEYS or not _numeric(v):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(v))
    return {k: (np.asarray(x), np.asarray(y)) for k, (x, y) in series.items()}


def plot_training_curves(records: Sequence[dict[str, Any]]) -> Figure | None:
    """One small plot per numeric metric other than the per-level codebook ones (``None`` if none)."""
    series = {k: v for k, v in metric_series(records).items() if not _LEVEL_KEY.match(k)}
    if not series:
        return None
    keys = sorted(series, key=lambda k: (0 if k == "loss" else 1 if "loss" in k else 2, k))
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = _figure(3.2 * ncols, 2.2 * nrows + 0.4)
    fig.suptitle("tokenizer training", fontsize=9)
    height = 2.2 * nrows + 0.4
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.45 / height, top=1 - 0.45 / height, hspace=0.6, wspace=0.3)
    for i, key in enumerate(keys):
        x, y = series[key]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(x, y, marker="o", ms=2, lw=1.2)
        if "loss" in key and (y > 0).all() and y.max() / y.min() > 20:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("epoch", fontsize=6)
        ax.tick_params(labelsize=6)
    return fig


def plot_codebook_training(records: Sequence[dict[str, Any]]) -> Figure | None:
    """``usage_l<l>`` and ``perplexity_l<l>`` over epochs, one line per level (``None`` if absent)."""
    series = metric_series(records)
    kinds = {}
    for key, xy in series.items():
        if m := _LEVEL_KEY.match(key):
            kinds.setdefault(m.group(1), {})[int(m.group(2))] = xy
    if not kinds:
        return None
    fig = _figure(3.4 * len(kinds), 2.6)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.17, top=0.85, wspace=0.3)
    for i, kind in enumerate(sorted(kinds, reverse=True)):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        for level, (x, y) in sorted(kinds[kind].items()):
            ax.plot(x, y, marker="o", ms=2, lw=1.2, label=f"level {level}")
        ax.set_title(f"codebook {kind} per level (training)", fontsize=8)
        ax.set_xlabel("epoch", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    return fig


def code_statistics(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """``(usage [K, L], perplexity [K, L])`` of the final tokens (negative codes = no token, ignored)."""
    n, k, levels = tokens.codes.shape
    usage = np.zeros((k, levels))
    perp = np.zeros((k, levels))
    for c in range(k):
        for lv in range(levels):
            col = tokens.codes[:, c, lv]
            _, counts = np.unique(col[col >= 0], return_counts=True)
            usage[c, lv] = counts.size
            if counts.size:
                p = counts / counts.sum()
                perp[c, lv] = float(np.exp(-(p * np.log(p)).sum()))
    return usage, perp


def plot_code_usage(tokens: Tokens) -> Figure:
    """Final codes used and perplexity per category, one bar group per level."""
    usage, perp = code_statistics(tokens)
    k, levels = usage.shape
    fig = _figure(max(5.0, 0.5 * k * levels + 2.5), 3.2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.3, top=0.86, wspace=0.25)
    x = np.arange(k)
    width = 0.8 / levels
    for i, (vals, what) in enumerate(((usage, "distinct codes used"), (perp, "perplexity exp(H)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for lv in range(levels):
            ax.bar(x + (lv - (levels - 1) / 2) * width, vals[:, lv], width, label=f"level {lv}")
        ax.set_xticks(x, tokens.categories, rotation=45, ha="right", fontsize=6)
        ax.set_title(f"final tokens: {what}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    return fig


def plot_frontier(frontier: dict) -> Figure:
    """Validation R² of the cleaned scalar features against informative tokens per operator: the
    tokenizer's level prefixes (coarse, +medium, all) and PCA + PQ with the same token counts
    (``spinlock.encoding.frontier.run_frontier``)."""
    t, pq = frontier["tokenizer"], frontier["pq"]
    fig = _figure(5.0, 3.4)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.88)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([p["tokens"] for p in pq], [p["r2"] for p in pq], "o-", color="C0", label="PCA + PQ (256 codes / token)")
    ax.plot(t["tokens"], t["scalar"], "D-", color="C3", label="tokenizer: coarse, +medium, all")
    for n, v in zip(t["tokens"], t["scalar"], strict=True):
        ax.annotate(f"{v:.3f}", (n, v), textcoords="offset points", xytext=(4, -10), fontsize=6, color="C3")
    ax.set_xlabel("informative tokens per operator", fontsize=7)
    ax.set_ylabel("validation R² (pooled)", fontsize=7)
    ax.set_title(f"frontier: {t['validation_rows']} validation rows", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return fig


def plot_category_sizes(categories: Sequence[CategoryMembers]) -> Figure:
    """Number of features per tokenizer category (horizontal bars)."""
    fig = _figure(5.5, 0.8 + 0.28 * len(categories))
    fig.subplots_adjust(left=0.3, right=0.95, bottom=0.35 / (0.8 + 0.28 * len(categories)) + 0.05, top=0.88)
    ax = fig.add_subplot(1, 1, 1)
    sizes = [len(c.features) for c in categories]
    ax.barh(range(len(categories)), sizes, color="#55a868")
    ax.set_yticks(range(len(categories)), [c.name for c in categories], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("features", fontsize=7)
    ax.set_title(f"{len(categories)} categories, {sum(sizes)} features", fontsize=8)
    ax.tick_params(labelsize=6)
    return fig


def panel_order(streams: Sequence[str]) -> list[int]:
    """Token stream indices with each category's first stream before the extra streams of wide
    categories (``<category>.1``, ``.2``, ...), so the first panels show different categories."""
    extra = [bool((m := re.fullmatch(r".+\.(\d+)", n)) and int(m.group(1)) > 0) for n in streams]
    return [i for i, e in enumerate(extra) if not e] + [i for i, e in enumerate(extra) if e]


def plot_token_embedding(run: RunData, tokens: Tokens, max_categories: int = 6) -> Figure:
    """Ok operators (the figures' seeded sample of them beyond ``MAX_PLOT_OPERATORS``, said in the title)
    in the first two principal components of behaviour space (see
    :func:`spinlock.viz.select.behaviour_matrix`), one panel per token stream (first streams of the
    categories first, :func:`panel_order`; streams without a coarse position left out) coloured by its
    coarse code."""
    rows, z = behaviour_matrix(run)
    n_ok = run.ok_rows.size
    if z.shape[1] >= 2 and rows.size >= 2:
        xy = PCA(n_components=2, svd_solver="full").fit_transform(z)
    else:
        xy = np.column_stack([z[:, 0], np.zeros(rows.size)])
    streams = [c for c in panel_order(tokens.categories) if (tokens.codes[:, c, 0] >= 0).any()]
    if not streams:
        raise SpinlockError("no token stream has a coarse token position")
    k = min(len(streams), max_categories)
    ncols = min(3, k)
    nrows = math.ceil(k / ncols)
    fig = _figure(3.4 * ncols, 3.0 * nrows + 0.4)
    fig.suptitle(f"{sample_note(rows.size, n_ok)} in behaviour space (PCA of {z.shape[1]} robust-scaled features)",
                 fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=1 - 0.5 / (3.0 * nrows + 0.4), hspace=0.4, wspace=0.25)
    size = float(np.clip(3000.0 / max(rows.size, 1), 3.0, 30.0))
    for panel, c in enumerate(streams[:k]):
        ax = fig.add_subplot(nrows, ncols, panel + 1)
        code = tokens.codes[rows, c, 0]
        n_codes = int(code.max(initial=0)) + 1
        base = matplotlib.colormaps["tab10" if n_codes <= 10 else "tab20" if n_codes <= 20 else "turbo"]
        cmap = ListedColormap(base(np.arange(n_codes) % base.N) if n_codes <= 20 else base(np.linspace(0, 1, n_codes)))
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=code, cmap=cmap, s=size, vmin=-0.5, vmax=n_codes - 0.5, linewidths=0)
        ax.set_title(f"{tokens.categories[c]}: coarse token", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(sc, ax=ax, fraction=0.05, pad=0.02)
        cb.set_ticks(np.arange(n_codes) if n_codes <= 20 else np.linspace(0, n_codes - 1, 5).round())
        cb.ax.tick_params(labelsize=5)
    return fig


def plot_same_token(
    run: RunData,
    tokens: Tokens,
    mode: str,
    cmap: str,
    category: str | int | None = None,
    n_codes: int = 3,
    per_code: int = 4,
    seed: int = 0,
    percentile: float = 1.0,
) -> Figure:
    """Rows = the ``n_codes`` most populated coarse codes of one category, columns = ``per_code``
    operators sharing that code (seeded draw among ok operators), each shown by its final frame
    (realization 0) in render ``mode``."""
    k = tokens.category_index(category)
    code = tokens.codes[:, k, 0]
    ok = (run.status == 0) & (code >= 0)
    values, counts = np.unique(code[ok], return_counts=True)
    order = [int(v) for v, c in sorted(zip(values, counts, strict=True), key=lambda vc: (-vc[1], vc[0])) if c >= 2]
    if not order:
        raise SpinlockError(f"no coarse token of category {tokens.categories[k]!r} is shared by two ok operators")
    order = order[:n_codes]
    picks = []
    for v in order:
        members = np.flatnonzero(ok & (code == v))
        n = min(per_code, members.size)
        picks.append(sorted(numpy_rng(seed, "viz.same_token", k, v).choice(members, size=n, replace=False).tolist()))
    ncols = max(len(p) for p in picks)
    fig = _figure(1.8 * ncols + 0.4, 1.95 * len(order) + 0.5)
    fig.suptitle(f"same coarse token, different operators ({tokens.categories[k]}; final frame, {mode})", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (1.95 * len(order) + 0.5), hspace=0.3)
    for i, (v, rows) in enumerate(zip(order, picks, strict=True)):
        for j, (row, img) in enumerate(zip(rows, last_frames(run, rows, mode, cmap, percentile), strict=True)):
            ax = fig.add_subplot(len(order), ncols, i * ncols + j + 1)
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"tok {v} · op {int(run.operator_index[row])}", fontsize=7)
    return fig

"""Validation metrics of the VQ-VAE: reconstruction R² per family and per level, codebook health.

* R² of a group of columns is ``1 - sum(SSE) / sum(SST)`` over its columns (each column's SST about
  its own validation mean), i.e. the share of the group's variance the reconstruction explains.
* Level ``l`` decodes from the first ``l`` levels of every encoder (1 = coarse, 3 = all).
* Codebook usage of a level is the fraction of its codes chosen by at least one row; perplexity is
  ``exp(H)`` of the code frequencies (= the number of equally used codes it matches), and its ratio
  to K (the encoder's codebook size at that level) is what the ``perplexity >= 0.5·K`` target reads.
  Each is averaged over the codebooks of the level (and the worst is reported too). Codebooks with one
  code (K = 1) are left out and counted (``single_code_books``): they can only read usage 1.0 and say
  nothing; they are not token positions either (spinlock.encoding.layout).
* Counted on n rows, even perfectly uniform codes show usage of only ``1 - (1 - 1/K)^n`` (0.54 for
  K = 512, n = 400), so :func:`codebook_health` also reports that ceiling; judge codebooks on the
  training rows or on all tokens (:func:`token_health`), not on a small validation split.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import LEVELS, HierarchicalVQVAE


class R2Accumulator:
    """Streaming per-column sums for R²: n, sum y, sum y², sum (y - ŷ)², all float64 [P]."""

    def __init__(self, columns: int):
        self.n = 0
        self.s = np.zeros(columns)
        self.s2 = np.zeros(columns)
        self.sse = np.zeros(columns)

    def update(self, y: torch.Tensor, yhat: torch.Tensor) -> None:
        """``y``, ``yhat`` [B, P] (flatten any trailing axes first)."""
        y64 = y.detach().double().cpu().numpy()
        e = y64 - yhat.detach().double().cpu().numpy()
        self.n += y64.shape[0]
        self.s += y64.sum(0)
        self.s2 += (y64**2).sum(0)
        self.sse += (e**2).sum(0)

    def r2(self, columns: Iterable[int] | None = None) -> float:
        cols = slice(None) if columns is None else np.asarray(list(columns), dtype=np.int64)
        sst = (self.s2 - self.s**2 / max(self.n, 1))[cols].sum()
        return float(1.0 - self.sse[cols].sum() / sst) if sst > 0 else float("nan")


def code_statistics(counts: np.ndarray) -> tuple[float, float]:
    """(usage fraction, perplexity) of one codebook's code counts [S]."""
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts[counts > 0] / total
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum()))


def _level_health(books: list[tuple[int, np.ndarray]]) -> dict:
    """Per-level statistics of codebooks given as (level 0..2, code counts [K]); books with K = 1 are
    left out (one code carries no information and would read as usage 1.0) and counted instead."""
    rows = int(books[0][1].sum()) if books else 0
    out: dict = {k: [] for k in ("codebook_usage", "perplexity", "perplexity_ratio", "usage_min",
                                 "perplexity_ratio_min", "usage_ceiling", "books", "single_code_books",
                                 "constant_books")}
    for lv in range(LEVELS):
        counts = [c for level, c in books if level == lv and len(c) > 1]
        stats = [code_statistics(c) for c in counts]
        usage = [u for u, _ in stats]
        ratio = [p / len(c) for (_, p), c in zip(stats, counts, strict=True)]

        def agg(fn, values: list[float]) -> float:
            return float(fn(values)) if values else float("nan")

        out["codebook_usage"].append(agg(np.mean, usage))
        out["perplexity"].append(agg(np.mean, [p for _, p in stats]))
        out["perplexity_ratio"].append(agg(np.mean, ratio))
        out["usage_min"].append(agg(np.min, usage))
        out["perplexity_ratio_min"].append(agg(np.min, ratio))
        out["usage_ceiling"].append(agg(np.mean, [1.0 - (1.0 - 1.0 / len(c)) ** rows for c in counts]))
        out["books"].append(len(counts))
        out["single_code_books"].append(sum(1 for level, c in books if level == lv and len(c) == 1))
        out["constant_books"].append(sum(1 for c in counts if rows and int((c > 0).sum()) == 1))
    out["rows"] = rows
    return out


def codebook_health(counts: list[list[np.ndarray]]) -> dict:
    """Usage and perplexity per level from code counts ``counts[e][level]`` (length K of that codebook).

    Codebooks with one code (K = 1, planned for levels whose coarser levels already resolve the input)
    are left out of every statistic: ``single_code_books`` [3] counts them, ``books`` [3] the codebooks
    that are counted. Returns ``codebook_usage``, ``perplexity``, ``perplexity_ratio`` (perplexity / K),
    each [3] and averaged over the counted codebooks (NaN for a level with none); ``usage_min`` and
    ``perplexity_ratio_min`` [3] (worst codebook); ``usage_ceiling`` [3]: the mean usage that uniformly
    used codes would show on this many rows; ``constant_books`` [3]: counted codebooks of which these
    rows chose one code only; ``usage_by_encoder`` and ``perplexity_ratio_by_encoder`` [E][3] (None for
    K = 1); ``rows``.
    """
    books = [(lv, c) for enc in counts for lv, c in enumerate(enc)]
    out = _level_health(books)
    stats = [[code_statistics(c) if len(c) > 1 else None for c in enc] for enc in counts]
    out["usage_by_encoder"] = [[s[0] if s else None for s in enc] for enc in stats]
    out["perplexity_ratio_by_encoder"] = [[s[1] / len(c) if s else None for s, c in zip(es, enc, strict=True)]
                                          for es, enc in zip(stats, counts, strict=True)]
    return out


def token_health(tokens: np.ndarray, layout: TokenLayout) -> dict:
    """:func:`codebook_health`'s per-level statistics of a token matrix [N, positions] (as written to
    /tokens), over its positions: :func:`position_health` of its code counts."""
    tokens = np.asarray(tokens)
    layout.check(tokens, "token_health")
    counts = [np.bincount(tokens[:, j], minlength=p.codebook_size) for j, p in enumerate(layout.positions)]
    return position_health(counts, int(tokens.shape[0]), layout)


def position_health(counts: list[np.ndarray], rows: int, layout: TokenLayout) -> dict:
    """Per-level statistics from the code counts [K] of each position of ``layout`` over ``rows`` operators
    (counted block by block while encoding); ``single_code_books`` counts the planned K = 1 levels (never
    emitted), ``dropped`` names every level that is not a position; ``constant_positions`` names the
    positions these rows hold one code of; ``usage_by_position`` and ``perplexity_ratio_by_position``
    map position names to values."""
    out = _level_health([(p.level - 1, c) for p, c in zip(layout.positions, counts, strict=True)])
    out["rows"] = rows
    out["single_code_books"] = [sum(1 for p, _ in layout.dropped if p.level == lv + 1 and p.codebook_size == 1)
                                for lv in range(LEVELS)]
    out["dropped"] = [p.name for p, _ in layout.dropped]
    out["positions"] = len(layout.positions)
    out["constant_positions"] = [p.name for p, c in zip(layout.positions, counts, strict=True)
                                 if rows and int((c > 0).sum()) == 1]
    stats = [code_statistics(c) for c in counts]
    out["usage_by_position"] = {p.name: s[0] for p, s in zip(layout.positions, stats, strict=True)}
    out["perplexity_ratio_by_position"] = {p.name: s[1] / p.codebook_size
                                           for p, s in zip(layout.positions, stats, strict=True)}
    return out


@torch.no_grad()
def evaluate(model: HierarchicalVQVAE, batches: Iterable[dict[str, torch.Tensor]],
             family_columns: dict[str, list[int]]) -> dict:
    """Validation metrics over ``batches`` of cleaned inputs (keys ``x``, ``temporal``, ``ic``).

    Returns ``{"r2": {group: [level1, level2, level3]}, "rows": n}`` plus the keys of
    :func:`codebook_health` on these rows; groups are the scalar families, ``all`` (every cleaned
    scalar feature), ``temporal`` and ``ic`` (coarse IC) where present.
    """
    was = model.training
    model.eval()
    spec = model.spec
    acc_x = [R2Accumulator(spec.n_features) for _ in range(LEVELS)]
    acc_t = [R2Accumulator(spec.temporal_length * spec.temporal_features) for _ in range(LEVELS)]
    acc_ic = [R2Accumulator(model.ic_target_dim) for _ in range(LEVELS)]
    counts = [[np.zeros(k, dtype=np.int64) for k in sizes] for sizes in spec.encoder_codebook_sizes]
    rows = 0
    try:
        for b in batches:
            x, t, ic = b["x"], b.get("temporal"), b.get("ic")
            idx, _ = model.encode(x, t, ic)
            _, _, ic_target = model.latents(x, t, ic)
            rows += x.shape[0]
            idx_np = idx.cpu().numpy()
            for e in range(spec.n_encoders):
                for lv in range(LEVELS):
                    counts[e][lv] += np.bincount(idx_np[:, e, lv], minlength=len(counts[e][lv]))
            for lv in range(LEVELS):
                rx, rt, ric = model.decode_indices(idx, levels=lv + 1)
                acc_x[lv].update(x, rx)
                if rt is not None:
                    acc_t[lv].update(t.flatten(1), rt.flatten(1))
                if ric is not None:
                    acc_ic[lv].update(ic_target, ric)
    finally:
        model.train(was)
    r2 = {"all": [a.r2() for a in acc_x]}
    for fam, cols in family_columns.items():
        if cols:
            r2[fam] = [a.r2(cols) for a in acc_x]
    if spec.temporal_features:
        r2["temporal"] = [a.r2() for a in acc_t]
    if spec.ic_channels:
        r2["ic"] = [a.r2() for a in acc_ic]
    return {"r2": r2, **codebook_health(counts), "rows": rows}

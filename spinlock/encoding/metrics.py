"""Validation metrics of the VQ-VAE: reconstruction R² per family and per level, codebook health.

* R² of a group of columns is ``1 - sum(SSE) / sum(SST)`` over its columns (each column's SST about
  its own validation mean), i.e. the share of the group's variance the reconstruction explains.
* Level ``l`` decodes from the first ``l`` levels of every encoder (1 = coarse, 3 = all).
* Codebook usage of a level is the fraction of its codes chosen by at least one row; perplexity is
  ``exp(H)`` of the code frequencies (= the number of equally used codes it matches), and its ratio
  to K (the encoder's codebook size at that level) is what the ``perplexity >= 0.5·K`` target reads.
  Each is averaged over encoders (and the worst encoder is reported too).
* Counted on n rows, even perfectly uniform codes show usage of only ``1 - (1 - 1/K)^n`` (0.54 for
  K = 512, n = 400), so :func:`codebook_health` also reports that ceiling; judge codebooks on the
  training rows or on all tokens (:func:`token_health`), not on a small validation split.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

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


def codebook_health(counts: list[list[np.ndarray]]) -> dict:
    """Usage and perplexity per level from code counts ``counts[e][level]`` (length K of that codebook).

    Returns ``codebook_usage``, ``perplexity``, ``perplexity_ratio`` (perplexity / K), each [3] and
    averaged over encoders; ``usage_min`` and ``perplexity_ratio_min`` [3] (worst encoder);
    ``usage_ceiling`` [3]: the mean usage that uniformly used codes would show on this many rows;
    ``usage_by_encoder`` and ``perplexity_ratio_by_encoder`` [E][3]; ``rows``.
    """
    stats = [[code_statistics(c) for c in enc] for enc in counts]
    sizes = [[len(c) for c in enc] for enc in counts]
    rows = int(counts[0][0].sum()) if counts else 0
    usage = [[s[lv][0] for lv in range(LEVELS)] for s in stats]
    ratio = [[s[lv][1] / k[lv] for lv in range(LEVELS)] for s, k in zip(stats, sizes, strict=True)]

    def mean(values: list[list[float]], lv: int) -> float:
        return float(np.mean([v[lv] for v in values]))

    return {
        "codebook_usage": [mean(usage, lv) for lv in range(LEVELS)],
        "perplexity": [float(np.mean([s[lv][1] for s in stats])) for lv in range(LEVELS)],
        "perplexity_ratio": [mean(ratio, lv) for lv in range(LEVELS)],
        "usage_min": [float(min(v[lv] for v in usage)) for lv in range(LEVELS)],
        "perplexity_ratio_min": [float(min(v[lv] for v in ratio)) for lv in range(LEVELS)],
        "usage_ceiling": [float(np.mean([1.0 - (1.0 - 1.0 / k[lv]) ** rows for k in sizes])) for lv in range(LEVELS)],
        "usage_by_encoder": usage,
        "perplexity_ratio_by_encoder": ratio,
        "rows": rows,
    }


def token_health(tokens: np.ndarray, encoder_sizes: tuple[tuple[int, ...], ...]) -> dict:
    """:func:`codebook_health` of a token matrix [N, E·3] (column ``3e + l``, as written to /tokens)."""
    tokens = np.asarray(tokens)
    return codebook_health([[np.bincount(tokens[:, LEVELS * e + lv], minlength=k)
                             for lv, k in enumerate(sizes)] for e, sizes in enumerate(encoder_sizes)])


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
    acc_ic = [R2Accumulator(spec.ic_channels * model.ic_target_resolution**2) for _ in range(LEVELS)]
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
                    acc_ic[lv].update(ic_target.flatten(1), ric.flatten(1))
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

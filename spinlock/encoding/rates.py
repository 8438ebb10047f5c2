"""Rate allocation: how many token streams each discovered category gets, by the variance it holds.

A token stream is one latent with a three-level residual quantizer (three codes, :mod:`.model`). A
stream is worth what the principal components it has to carry explain: category c's j-th stream
carries components ``[j·p, (j+1)·p)`` of the category's own PCA (p = ``components_per_stream``), so
its value is the training variance those components explain. Every category gets one stream (the
categories are kept whatever their size), and the remaining streams of the budget go, one at a time,
to the stream of largest value among all categories' next ones (greedy reverse water-filling over
groups of components).

Why: with one stream per ``p`` components of 95 % of each category's own variance, small categories
(a few discrete parameters, 1-4 components) got as many tokens as they had groups however little
variance they held, and the budget followed no global measure. A linear code of the same cleaned
features that allocates 2-D PCA subspaces by variance across the same categories loses only
0.02-0.03 of validation R² against a global PCA code of equal size (docs/tokenizer.md, "Frontier").
"""

from __future__ import annotations

import heapq

import numpy as np


def category_variances(x: np.ndarray, columns: list[tuple[int, ...]] | tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    """Explained variance of each principal component of each category, in decreasing order.

    ``x`` [n, D'] cleaned training rows; ``columns[c]`` the indices of category c's features.
    """
    out = []
    for cols in columns:
        xc = np.asarray(x[:, list(cols)], np.float64)
        xc = xc - xc.mean(axis=0)
        ev = np.linalg.svd(xc, compute_uv=False) ** 2 / max(len(xc) - 1, 1) if len(xc) > 1 else np.zeros(1)
        out.append(ev)
    return out


def allocate_streams(variances: list[np.ndarray], total: int, components_per_stream: int) -> list[int]:
    """Streams per category: one each, then ``total - len(variances)`` more, greedily by the variance of
    the next ``components_per_stream`` components of a category (never to components without
    variance, so fewer than ``total`` streams when the data run out). Ties go to the lower category
    index."""
    if components_per_stream < 1:
        raise ValueError(f"components_per_stream must be >= 1, got {components_per_stream}")
    streams = [1] * len(variances)

    def value(c: int) -> float:
        lo = streams[c] * components_per_stream
        return float(variances[c][lo:lo + components_per_stream].sum())

    floor = 1e-9 * sum(float(v.sum()) for v in variances)  # components without variance get no stream
    heap = [(-value(c), c) for c in range(len(variances)) if value(c) > floor]
    heapq.heapify(heap)
    for _ in range(max(0, total - len(variances))):
        if not heap:
            break
        _, c = heapq.heappop(heap)
        streams[c] += 1
        if value(c) > floor:
            heapq.heappush(heap, (-value(c), c))
    return streams


def plan_streams(sample: np.ndarray | None, columns: list[tuple[int, ...]] | tuple[tuple[int, ...], ...],
                 total: int, components_per_stream: int) -> list[int]:
    """Token streams per category for a fit: :func:`allocate_streams` of ``total`` streams over the
    categories' explained variances in ``sample`` [n, D'] (the cleaned rows k-means starts from; None
    or fewer than 2 rows: one stream each)."""
    if sample is None or len(sample) < 2:
        return [1] * len(columns)
    return allocate_streams(category_variances(sample, columns), total, components_per_stream)

"""Rate allocation: which token streams each category has, and at which levels each stream has a token, by
the variance the token's code is estimated to explain.

A category's token stream ``j`` holds ``p`` of its principal components, ``[p·j, p·(j+1))``
(:func:`stream_components`, ``components_per_stream``), all of them from the first level at which the
stream has a token; each later level with a token quantizes what the stream's coarser codes left of them
(a residual level, :class:`.quantizer.StreamQuantizer`). A level without a token has one code. So each
prefix of the levels codes the category's largest components, coarse → medium → fine.

The budget is given per level prefix (informative tokens at coarse, +medium, all). Level by level, coarse
first, each of the level's tokens goes to the candidate that would explain most variance (greedy reverse
water-filling): a category's next stream (its next ``p`` components) or a finer code of one of its streams
opened at a coarser level. A token quantizing variances ``v`` explains ``(1 - r)·Σv`` and leaves ``r·v``,
``r = 2^(-2·log2 K / d)`` the share a K-code k-means of ``d = (Σv)² / Σv²`` effective dimensions leaves
(the rate-distortion function of a Gaussian source; the 4096-operator run's per-category k-means of 4-D
bands leave 0.03-0.08, as this gives). A category of a few discrete values (effective inputs ≤ its level's
codes) is explained entirely by one token.

Why streams that open at any level and then refine (format 8), not levels that each add components to the
same streams (format 7: level l of stream j took ``p_l`` new components next to what the coarser levels left,
so a fine token coded 9 dimensions): on the 4096-operator run the fine level's tokens then spent 8 bits on 6
residual and 3 new dimensions at once, and the full prefix stayed at 0.976 from the untrained model on
(PCA + PQ: 0.978). Letting each token either open 4 new components or refine one stream, whichever explains
more, gives the untrained model 0.835 / 0.932 / 0.981 (was 0.835 / 0.923 / 0.976) and the trained one
0.841 / 0.933 / 0.981 at 24 / 48 / 96 tokens (docs/tokenizer.md, "Token streams" and "Frontier").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

Pattern = tuple[bool, ...]
"""Which levels of a stream have a token (coarse, medium, fine)."""


def category_variances(x: np.ndarray, columns: Sequence[Sequence[int]]) -> list[np.ndarray]:
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


def stream_components(j: int, components: int, available: int) -> list[int]:
    """Principal components (indices into the category's PCA, < ``available``) stream ``j`` holds."""
    return list(range(components * j, min(components * (j + 1), available)))


def _code_share_left(v: np.ndarray, codes: int) -> float:
    """Share of the variance ``v`` [d] a k-means of ``codes`` codes leaves: ``2^(-2·log2 K / d_eff)``."""
    d = float(v.sum()) ** 2 / float((v**2).sum())
    return 2.0 ** (-2.0 * math.log2(codes) / d)


def allocate_tokens(variances: Sequence[np.ndarray], budgets: Sequence[int], components: int,
                    level_sizes: Sequence[int], effective: Sequence[float | None]) -> list[list[Pattern]]:
    """Each category's streams and the levels at which each has a token (``[categories][streams]`` of
    patterns), for ``budgets[l]`` category tokens at level l (fewer when no candidate explains anything).

    Level by level, coarse first, each token goes to the candidate that explains most estimated variance
    (module docstring; ``variances[c]``: category c's PCA spectrum, ``level_sizes``: codes per level): the
    category's next stream (``components`` more principal components) or a level-l code of one of its
    streams opened at a coarser level. ``effective[c]`` not None: the category has that many
    distinguishable inputs and at most ``level_sizes[0]`` of them, so one stream with one token explains all
    of its variance. Ties go to the lower category index, then to refining, then to the lower stream."""
    levels = len(budgets)
    spectra = [np.asarray(v, np.float64) for v in variances]
    streams: list[list[list[bool]]] = [[] for _ in spectra]
    left: list[list[np.ndarray]] = [[] for _ in spectra]  # per stream: the variances its codes left
    floor = 1e-9 * sum(float(v.sum()) for v in spectra)

    def band(c: int, j: int) -> np.ndarray:
        return spectra[c][stream_components(j, components, len(spectra[c]))]

    def explained(v: np.ndarray, lv: int) -> float:
        return (1.0 - _code_share_left(v, level_sizes[lv])) * float(v.sum())

    def opening(c: int, lv: int) -> tuple[float, int, int, int] | None:
        """Heap entry of category c's next stream at level lv, None if it explains nothing."""
        if effective[c] is not None:
            total = float(spectra[c].sum())
            return (-total, c, 1, 0) if not streams[c] and total > floor else None
        v = band(c, len(streams[c]))
        if v.size == 0 or v.sum() <= floor:
            return None
        return (-explained(v, lv), c, 1, len(streams[c]))

    for lv in range(levels):
        heap = []
        for c in range(len(spectra)):
            if effective[c] is None:
                heap += [(-explained(w, lv), c, 0, j) for j, w in enumerate(left[c]) if w.sum() > floor]
            entry = opening(c, lv)
            if entry is not None:
                heap.append(entry)
        heapq.heapify(heap)
        for _ in range(budgets[lv]):
            if not heap:
                break
            _, c, new, j = heapq.heappop(heap)
            if new:
                streams[c].append([False] * levels)
                left[c].append(np.zeros(0) if effective[c] is not None else band(c, j))
                entry = opening(c, lv)
                if entry is not None:
                    heapq.heappush(heap, entry)
            streams[c][j][lv] = True
            if effective[c] is None:
                left[c][j] = left[c][j] * _code_share_left(left[c][j], level_sizes[lv])
    return [[tuple(s) for s in st] for st in streams]


def tokens_per_level(patterns: Sequence[Pattern], levels: int = 3) -> list[int]:
    """Tokens a category has at each level, from its streams' patterns."""
    return [sum(1 for p in patterns if p[lv]) for lv in range(levels)]


def stream_sizes(patterns: Sequence[Pattern], level_sizes: Sequence[int],
                 effective: float | None) -> list[tuple[int, ...]]:
    """Codes per level of each stream of a category: ``level_sizes[l]`` where the stream has a token, else 1;
    a category of ``effective`` distinguishable inputs gets ``ceil(effective)`` codes (at most the level's).
    At least one stream (all one-code levels when the category has no token)."""
    if not patterns:
        return [(1,) * len(level_sizes)]
    return [tuple((min(k, max(2, math.ceil(effective - 1e-9))) if effective is not None else k) if t else 1
                  for t, k in zip(p, level_sizes, strict=True)) for p in patterns]

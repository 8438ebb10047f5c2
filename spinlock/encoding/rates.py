"""Rate allocation: which level of which token stream of which category gets a token, by the variance the
token's code is estimated to explain.

A token stream is one latent with a three-level quantizer (:class:`.quantizer.StreamQuantizer`): level l
refines what the stream's coarser codes left and adds ``p_l`` new principal components of its category
(``components_per_level``). The tokens of a category at level l are its streams ``0 .. t_l - 1``; they
take the category's components after those of its coarser levels' tokens (:func:`band_components`), so
each prefix of the levels codes the category's largest components. A stream may start at level 2 or 3
(its coarser levels have one code and no token).

The budget is given per level prefix (informative tokens at coarse, +medium, all). Level by level,
coarse first, each of the level's tokens goes to the category whose next token at that level would
explain most variance (:func:`allocate_tokens`, greedy reverse water-filling): a level-l token of stream
j explains ``(1 - r)·Σv`` of the variances ``v`` it quantizes (what the stream's coarser codes left of
their components, and its new components), ``r = 2^(-2·log2 K / d)`` the share a K-code k-means of ``d =
(Σv)² / Σv²`` effective dimensions leaves (the rate-distortion function of a Gaussian source; the
4096-operator run's per-category k-means of 4-D bands leave 0.03-0.08, as this gives). A category of a
few discrete values (effective inputs ≤ its level's codes) is explained entirely by one token.

Why: with a stream per group of components and three residual levels of the same latent, the third
level added < 0.01 of validation R², small categories spent tokens on levels that refined an input their
coarse code had already resolved, and one stream count fixed all three prefixes at once (26 / 45 / 64
tokens); a token that buys new components wherever they explain most follows reverse water-filling,
and a budget per prefix puts the coarse, +medium and full codes at the token counts asked for
(docs/tokenizer.md, "Token streams" and "Frontier").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np


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


def band_components(tokens: Sequence[int], j: int, components_per_level: Sequence[int],
                    available: int) -> list[list[int]]:
    """Principal components (indices into the category's PCA, < ``available``) that level l of stream
    ``j`` adds, for a category with ``tokens[l]`` tokens at level l: stream ``j < tokens[l]`` takes
    ``[o_l + j·p_l, o_l + (j+1)·p_l)`` with ``o_l = Σ_{k<l} tokens[k]·p_k``; a stream without a level-l
    token adds none there."""
    out, offset = [], 0
    for t, p in zip(tokens, components_per_level, strict=True):
        out.append([i for i in range(offset + j * p, offset + (j + 1) * p) if i < available] if j < t else [])
        offset += t * p
    return out


def tokens_per_category(sizes: Sequence[Sequence[int]], category_streams: Sequence[int]) -> list[list[int]]:
    """Tokens per level of each category (``[categories][levels]``) from the codes per level of its streams
    (a level with more than one code is a token): the ``tokens`` of :func:`band_components`."""
    out, first = [], 0
    for s in category_streams:
        out.append([sum(1 for k in sizes[first:first + s] if k[lv] > 1) for lv in range(len(sizes[first]))])
        first += s
    return out


def _code_share_left(v: np.ndarray, codes: int) -> float:
    """Share of the variance ``v`` [d] a k-means of ``codes`` codes leaves: ``2^(-2·log2 K / d_eff)``."""
    d = float(v.sum()) ** 2 / float((v**2).sum())
    return 2.0 ** (-2.0 * math.log2(codes) / d)


def allocate_tokens(variances: Sequence[np.ndarray], budgets: Sequence[int], components_per_level: Sequence[int],
                    level_sizes: Sequence[int], effective: Sequence[float | None]) -> list[list[int]]:
    """Tokens per level of each category, ``[categories][levels]``, for ``budgets[l]`` category tokens at
    level l (fewer when no candidate explains anything).

    Level by level, coarse first, each token goes to the category whose next level-l token explains most
    estimated variance (module docstring; ``variances[c]``: category c's PCA spectrum, ``level_sizes``:
    codes per level). ``effective[c]`` not None: the category has that many distinguishable inputs and at
    most ``level_sizes[0]`` of them, so its first token explains all of its variance and it gets no other.
    Ties go to the lower category index."""
    cats, levels = len(variances), len(budgets)
    tokens = [[0] * levels for _ in range(cats)]
    left: list[list[np.ndarray]] = [[] for _ in range(cats)]  # per stream: variances its codes left
    floor = 1e-9 * sum(float(np.sum(v)) for v in variances)

    def candidate(c: int, lv: int) -> tuple[float, np.ndarray] | None:
        """(gain, variances left) of category c's next level-lv token, None if it explains nothing."""
        ev = np.asarray(variances[c], np.float64)
        if effective[c] is not None:
            return (float(ev.sum()), np.zeros(0)) if sum(tokens[c]) == 0 and ev.sum() > floor else None
        j, p = tokens[c][lv], components_per_level[lv]
        offset = sum(tokens[c][k] * components_per_level[k] for k in range(lv))
        v = np.concatenate([left[c][j] if j < len(left[c]) else np.zeros(0), ev[offset + j * p:offset + (j + 1) * p]])
        if v.sum() <= floor:
            return None
        r = _code_share_left(v, level_sizes[lv])
        return (1.0 - r) * float(v.sum()), r * v

    for lv in range(levels):
        heap = []
        for c in range(cats):
            cand = candidate(c, lv)
            if cand is not None:
                heap.append((-cand[0], c, cand[1]))
        heapq.heapify(heap)
        for _ in range(budgets[lv]):
            if not heap:
                break
            _, c, rest = heapq.heappop(heap)
            j = tokens[c][lv]
            if j < len(left[c]):
                left[c][j] = rest
            else:
                left[c].append(rest)
            tokens[c][lv] += 1
            cand = candidate(c, lv)
            if cand is not None:
                heapq.heappush(heap, (-cand[0], c, cand[1]))
    return tokens


def stream_sizes(tokens: Sequence[int], level_sizes: Sequence[int], effective: float | None) -> list[tuple[int, ...]]:
    """Codes per level of each stream of a category with ``tokens[l]`` tokens at level l: ``level_sizes[l]``
    where stream j has a token (``j < tokens[l]``), else 1; a category of ``effective`` distinguishable
    inputs gets ``ceil(effective)`` codes (at most the level's). At least one stream (all one-code levels
    when the category has no token)."""
    streams = max(1, *tokens)
    return [tuple((min(k, max(2, math.ceil(effective - 1e-9))) if effective is not None else k) if j < t else 1
                  for t, k in zip(tokens, level_sizes, strict=True)) for j in range(streams)]

"""Mergeable streaming statistics for fitting the cleaner in bounded memory.

* :class:`Moments` — count, mean and co-moment matrix of a block of rows, merged with the pairwise
  update of Chan, Golub & LeVeque (1979): for blocks a, b with ``delta = mean_b - mean_a``,
  ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n``. Exact in exact arithmetic for any partition.
* :class:`BottomKSample` — a fixed-size deterministic sample: keep the ``k`` rows whose key
  ``hash(seed, operator_index)`` is smallest. The union of two samples truncated to ``k`` is the sample
  of the union, so the result does not depend on how the rows were split into blocks or in what order
  they arrived; it is a uniform random sample of the rows (hash as random permutation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spinlock.rng import derive_key, mix64


def row_keys(seed: int, stream: str, operator_index: np.ndarray) -> np.ndarray:
    """[B] int64 pseudo-random keys, a pure function of (seed, stream, operator index)."""
    base = torch.tensor(derive_key(seed, stream), dtype=torch.int64)
    idx = torch.from_numpy(np.array(operator_index, dtype=np.int64))  # a writable copy
    return mix64(mix64(idx) ^ base).numpy()


def unit_hash(seed: int, stream: str, operator_index: np.ndarray) -> np.ndarray:
    """[B] float64 in [0, 1): ``row_keys`` mapped to the unit interval (top 53 bits)."""
    k = row_keys(seed, stream, operator_index)
    return ((k.view(np.uint64) >> np.uint64(11)).astype(np.float64)) / float(1 << 53)


@dataclass
class Moments:
    """Count ``n``, mean [D] and co-moment ``m2`` ([D, D], or [D] when ``full`` is False), float64."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int, full: bool = True) -> Moments:
        return cls(0, np.zeros(dim), np.zeros((dim, dim) if full else dim))

    @classmethod
    def of(cls, x: np.ndarray, full: bool = True) -> Moments:
        """Moments of the rows of ``x`` [N, D] (finite values only; the caller imputes first)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return cls.empty(x.shape[1], full)
        mean = x.mean(axis=0)
        c = x - mean
        m2 = c.T @ c if full else np.einsum("nd,nd->d", c, c)
        return cls(int(x.shape[0]), mean, m2)

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        w = self.n * other.n / n
        corr = np.outer(delta, delta) * w if self.m2.ndim == 2 else delta * delta * w
        return Moments(n, mean, self.m2 + other.m2 + corr)

    @property
    def variance(self) -> np.ndarray:
        """[D] unbiased variance (0 when n < 2)."""
        diag = np.diag(self.m2) if self.m2.ndim == 2 else self.m2
        return diag / max(self.n - 1, 1)

    def correlation(self) -> np.ndarray:
        """[D, D] Pearson correlation; a zero-variance column gets r = 0 off the diagonal."""
        if self.m2.ndim != 2:
            raise ValueError("correlation needs full co-moments (Moments.of(..., full=True))")
        d = np.sqrt(np.clip(np.diag(self.m2), 0.0, None))
        safe = np.where(d > 0, d, 1.0)
        r = self.m2 / np.outer(safe, safe)
        r[d == 0, :] = 0.0
        r[:, d == 0] = 0.0
        np.fill_diagonal(r, 1.0)
        return np.clip(r, -1.0, 1.0)


@dataclass
class BottomKSample:
    """The ``k`` rows with the smallest keys: ``keys`` [m] int64 (m <= k) and row ``values`` [m, ...]."""

    k: int
    keys: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def of(cls, k: int, keys: np.ndarray, values: dict[str, np.ndarray]) -> BottomKSample:
        order = np.argsort(keys, kind="stable")[:k]
        return cls(k, keys[order], {name: v[order] for name, v in values.items()})

    def merge(self, other: BottomKSample) -> BottomKSample:
        keys = np.concatenate([self.keys, other.keys])
        values = {n: np.concatenate([self.values[n], other.values[n]]) for n in self.values}
        return BottomKSample.of(self.k, keys, values)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

"""Category discovery: hierarchical clustering of *features* by correlation distance.

Distance between features i and j is ``1 - |r_ij|`` (sign does not matter: a feature and its negation
carry the same information); average linkage (UPGMA) builds the dendrogram and the number of
categories is the cut with the best silhouette score (precomputed distances) in
[``min_categories``, ``max_categories``], clipped to [2, D - 1] — silhouette is undefined outside it.
Ties go to the smaller count. With fewer than 3 features there is nothing to choose and all features
form one category. Categories are numbered by their first feature in column order, so the result is
a pure function of the correlation matrix; every feature belongs to exactly one category.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinlock.errors import DataError


@dataclass(frozen=True)
class DiscoveredCategory:
    """A category of features found by clustering (:class:`CategoryDiscovery`); it feeds one token stream
    (several for a wide category)."""

    name: str
    features: tuple[str, ...]
    """Member feature names (cleaned column names), in column order."""
    columns: tuple[int, ...]
    """Indices of the members in the cleaned feature vector [D']."""


def correlation_distance(correlation: np.ndarray) -> np.ndarray:
    """[D, D] ``1 - |r|`` with an exact zero diagonal and exact symmetry (as squareform requires)."""
    d = 1.0 - np.abs(np.asarray(correlation, dtype=np.float64))
    d = np.clip((d + d.T) / 2.0, 0.0, 1.0)
    np.fill_diagonal(d, 0.0)
    return d


class CategoryDiscovery:
    """Estimator: ``fit(correlation, names)`` learns ``labels_`` [D], ``n_categories_``, ``scores_``."""

    def __init__(self, min_categories: int = 8, max_categories: int = 15):
        if max_categories < min_categories:
            raise ValueError(f"max_categories ({max_categories}) < min_categories ({min_categories})")
        self.min_categories = min_categories
        self.max_categories = max_categories

    def candidate_range(self, n_features: int) -> range:
        """Category counts the silhouette search tries for ``n_features`` features (may be empty)."""
        hi = min(self.max_categories, n_features - 1)
        lo = max(2, min(self.min_categories, hi))
        return range(lo, hi + 1)

    def fit(self, correlation: np.ndarray, names: list[str]) -> CategoryDiscovery:
        names = list(names)
        n = len(names)
        if correlation.shape != (n, n):
            raise DataError(f"correlation matrix {correlation.shape} does not match {n} feature names")
        dist = correlation_distance(correlation)
        self.scores_: dict[int, float] = {}
        labels = np.zeros(n, dtype=np.int64)
        candidates = self.candidate_range(n)
        if len(candidates):
            # imported here: every encode and training worker imports this module (a loaded tokenizer
            # holds its categories), and scipy + sklearn add ~0.8 s to each fresh process
            from scipy.cluster.hierarchy import fcluster, linkage
            from scipy.spatial.distance import squareform
            from sklearn.metrics import silhouette_score

            tree = linkage(squareform(dist, checks=False), method="average")
            best: tuple[float, np.ndarray] | None = None
            for k in candidates:
                cut = fcluster(tree, t=k, criterion="maxclust")
                if len(np.unique(cut)) < 2:
                    continue
                score = float(silhouette_score(dist, cut, metric="precomputed"))
                self.scores_[k] = score
                if best is None or score > best[0] + 1e-12:
                    best = (score, cut)
            if best is not None:
                labels = best[1]
        # renumber by first member so the numbering is independent of scipy's internal labels
        order: dict[int, int] = {}
        for lab in labels:
            order.setdefault(int(lab), len(order))
        self.labels_ = np.array([order[int(lab)] for lab in labels], dtype=np.int64)
        self.n_categories_ = len(order)
        self.names_ = names
        return self

    @property
    def categories_(self) -> list[DiscoveredCategory]:
        """The categories, each named ``cNN_<majority family>``."""
        out = []
        for c in range(self.n_categories_):
            cols = tuple(int(j) for j in np.flatnonzero(self.labels_ == c))
            feats = tuple(self.names_[j] for j in cols)
            family = Counter(f.split(".", 1)[0] for f in feats).most_common(1)[0][0]
            out.append(DiscoveredCategory(f"c{c:02d}_{family}", feats, cols))
        return out

    def to_json(self) -> dict:
        return {"min_categories": self.min_categories, "max_categories": self.max_categories,
                "names": self.names_, "labels": self.labels_.tolist(),
                "silhouette": {str(k): v for k, v in self.scores_.items()},
                "categories": [{"name": c.name, "features": list(c.features)} for c in self.categories_]}

    @classmethod
    def from_json(cls, d: dict) -> CategoryDiscovery:
        obj = cls(d["min_categories"], d["max_categories"])
        obj.names_ = list(d["names"])
        obj.labels_ = np.asarray(d["labels"], dtype=np.int64)
        obj.n_categories_ = int(obj.labels_.max()) + 1 if len(obj.labels_) else 0
        obj.scores_ = {int(k): float(v) for k, v in d["silhouette"].items()}
        return obj

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> CategoryDiscovery:
        return cls.from_json(json.loads(Path(path).read_text()))

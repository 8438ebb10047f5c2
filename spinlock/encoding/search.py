"""Nearest-behaviour search over token codes: a coarse-to-fine prefix distance and an exact inverted index.

Distance (``prefix distance``). Every token position is one level (1 coarse .. 3 fine) of one stream, and
the levels of a stream are a coarse-to-fine tree: a fine code only means something under its coarser
codes. Position ``p`` at level ``l`` weighs ``w_p = 2^(3 - l)`` (4, 2, 1). For two operators ``a`` and
``b`` and each stream ``s``, find the coarsest of its positions where they differ; from there on every
position of the stream counts as a mismatch::

    d(a, b) = Σ_s Σ_{p in s, level(p) >= first mismatching level of s} w_p
            = W - Σ_{(s, l): a and b agree on every position of s up to level l} w_(s, l)

with ``W`` the total weight (the largest distance: no stream shares its coarse code). Per stream this is
a tree (ultrametric) distance, so ``d`` is a metric: ``d(a, a) = 0``, symmetric, triangle inequality; and
differing at a coarse level is always farther than differing only at finer levels of that stream
(4 > 2 + 1). Distances are integers in ``[0, W]`` and tie often; neighbours are ordered by
``(distance, row)``.

Index (:class:`TokenIndex`). The second form of ``d`` is a sum over *agreeing prefixes*, so one posting
list per (stream, level, prefix of codes) gives it exactly: a query reads, per stream, the lists of its
own prefixes (one per level, each a subset of the previous one), adds each list's weight to its
operators' score (``np.bincount``), and ``d = W - score``. Only the query's posting lists are read
(about ``Σ_s N / K_s`` entries for coarse codebooks of K_s codes), never the ``[N, positions]`` code
matrix; selecting the k smallest is one pass over an ``[N]`` float vector. Results are exact: equal to
:meth:`TokenIndex.scan`, the brute-force reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spinlock.encoding.icfields import ICReader
from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import LEVELS
from spinlock.encoding.schema import FeatureBatch, FeatureSchema
from spinlock.errors import DataError
from spinlock.storage.layout import FEATURES_DIR

if TYPE_CHECKING:
    from spinlock.encoding.tokenizer import Tokenizer


def level_weight(level: int) -> int:
    """Weight of one position at ``level`` (1 coarse .. LEVELS fine): ``2^(LEVELS - level)``."""
    return 1 << (LEVELS - level)


@dataclass(frozen=True)
class Neighbors:
    rows: np.ndarray
    """[k] int64 rows of the indexed tokens, nearest first (ties by row)."""
    distances: np.ndarray
    """[k] int64 prefix distances."""


@dataclass(frozen=True)
class _Group:
    """Positions of one stream up to one level (a prefix), its posting lists and the level's weight."""

    columns: np.ndarray  # columns of the index's codes making up the prefix (coarse first)
    weight: int
    keys: np.ndarray  # [U] sorted distinct prefix keys
    starts: np.ndarray  # [U + 1] offsets into rows
    rows: np.ndarray  # [N] int32 rows grouped by key


class TokenIndex:
    """Exact k-nearest-neighbour search in the prefix distance over ``tokens`` [N, positions] of ``layout``.

    ``levels`` (1..3) truncates every stream to its coarsest levels (the distance over token prefixes
    of that depth).
    """

    def __init__(self, tokens: np.ndarray, layout: TokenLayout, levels: int = LEVELS):
        tokens = np.asarray(tokens)
        layout.check(tokens, "token index")
        if not 1 <= levels <= LEVELS:
            raise DataError(f"levels must be in 1..{LEVELS}, got {levels}")
        self.layout = layout
        self.levels = levels
        keep = [j for j, p in enumerate(layout.positions) if p.level <= levels]
        if not keep:
            raise DataError(f"no token position at levels 1..{levels} (the layout has levels"
                            f" {sorted({p.level for p in layout.positions})})")
        self.columns = np.array(keep, np.int64)
        """Columns of the layout's tokens the index compares."""
        sizes = np.array([layout.positions[j].codebook_size for j in keep], np.int64)
        dtype = np.uint8 if sizes.max() <= 256 else np.uint16 if sizes.max() <= 1 << 16 else np.int32
        self.codes = np.ascontiguousarray(tokens[:, keep], dtype=dtype)
        """[N, kept positions] the compared codes."""
        self.n = int(tokens.shape[0])
        weights, streams = [], []
        groups: list[_Group] = []
        for s in layout.streams:
            cols = sorted((c for c, j in enumerate(keep) if layout.positions[j].stream == s),
                          key=lambda c: layout.positions[keep[c]].level)
            key = np.zeros(self.n, np.int64)
            for depth, c in enumerate(cols):
                key = key * int(sizes[c]) + self.codes[:, c]
                w = level_weight(layout.positions[keep[c]].level)
                order = np.argsort(key, kind="stable")
                uniq, starts = np.unique(key[order], return_index=True)
                groups.append(_Group(np.array(cols[:depth + 1], np.int64), w, uniq,
                                     np.append(starts, self.n).astype(np.int64), order.astype(np.int32)))
            if cols:
                streams.append(np.array(cols, np.int64))
                weights.append(np.array([level_weight(layout.positions[keep[c]].level) for c in cols], np.int64))
        self._groups = groups
        self._streams = streams
        self._weights = weights
        self.max_distance = int(sum(w.sum() for w in weights))
        """W: the distance between operators that share no stream's coarse code."""

    @property
    def posting_entries(self) -> int:
        """Total posting-list length (N per indexed position)."""
        return sum(len(g.rows) for g in self._groups)

    @property
    def nbytes(self) -> int:
        """Memory held: codes and posting lists."""
        return self.codes.nbytes + sum(g.rows.nbytes + g.keys.nbytes + g.starts.nbytes for g in self._groups)

    def _query_codes(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query)
        if q.shape != (len(self.layout.positions),):
            raise DataError(f"query tokens have shape {q.shape}, the layout has {len(self.layout.positions)} positions")
        self.layout.check(q[None], "query tokens")
        return q[self.columns].astype(np.int64)

    def scan(self, query: np.ndarray) -> np.ndarray:
        """[N] int64 prefix distances from ``query`` [positions] to every row: the brute-force reference."""
        return self._distances(self.codes, self._query_codes(query))

    def _distances(self, codes: np.ndarray, q: np.ndarray) -> np.ndarray:
        d = np.full(len(codes), self.max_distance, np.int64)
        for cols, w in zip(self._streams, self._weights, strict=True):
            agree = np.cumprod(codes[:, cols] == q[cols], axis=1, dtype=np.int64)  # agree on the prefix up to l
            d -= agree @ w
        return d

    def postings(self, query: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """The posting lists of ``query``'s prefixes (rows sharing each prefix) with their level weights."""
        q = self._query_codes(query)
        out = []
        for g in self._groups:
            key = 0
            for c in g.columns:
                key = key * int(self.layout.positions[self.columns[c]].codebook_size) + int(q[c])
            u = int(np.searchsorted(g.keys, key))
            if u < len(g.keys) and g.keys[u] == key:
                out.append((g.rows[g.starts[u]:g.starts[u + 1]], g.weight))
        return out

    def distances(self, query: np.ndarray) -> np.ndarray:
        """[N] int64 prefix distances from ``query`` to every row, from the posting lists (equals :meth:`scan`)."""
        lists = self.postings(query)
        if not lists:
            return np.full(self.n, self.max_distance, np.int64)
        score = np.zeros(self.n, np.int64)
        for w in sorted({w for _, w in lists}):  # one unweighted count per level weight
            score += w * np.bincount(np.concatenate([p for p, v in lists if v == w]), minlength=self.n)
        return self.max_distance - score

    def query(self, query: np.ndarray, k: int = 10, exclude: np.ndarray | list[int] | None = None) -> Neighbors:
        """The ``k`` rows nearest to ``query`` [positions] (a row of the layout's tokens), nearest first,
        ties by row; ``exclude``: rows never returned (e.g. the query operator itself)."""
        return nearest(self.distances(query), k, exclude)


def nearest(distances: np.ndarray, k: int, exclude: np.ndarray | list[int] | None = None) -> Neighbors:
    """The ``k`` smallest of ``distances`` [N] ordered by (distance, row), skipping ``exclude`` rows."""
    d = np.asarray(distances).astype(np.float64)
    if exclude is not None:
        d[np.asarray(exclude, np.int64)] = np.inf
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    k = min(k, int(np.isfinite(d).sum()))
    if k == 0:
        return Neighbors(np.zeros(0, np.int64), np.zeros(0, np.int64))
    kth = np.partition(d, k - 1)[k - 1]
    below = np.flatnonzero(d < kth)
    rows = np.concatenate([below, np.flatnonzero(d == kth)[:k - len(below)]])
    rows = rows[np.lexsort((rows, d[rows]))]
    return Neighbors(rows.astype(np.int64), d[rows].astype(np.int64))


# ---------------------------------------------------------------------- runs on disk
def read_feature_batch(run_dir: str | Path, schema: FeatureSchema, operators: np.ndarray | None = None) -> FeatureBatch:
    """Rows of ``run_dir/features/shard-*.parquet`` (all, or those of global ``operators`` in that order) as
    a :class:`FeatureBatch` of ``schema``'s columns."""
    tables = Path(run_dir) / FEATURES_DIR
    _, files = FeatureSchema.from_parquet_dir(tables)
    cols = ["operator_index", "status", *schema.scalar, *schema.temporal_columns]
    flt = None if operators is None else pc.field("operator_index").isin(np.asarray(operators, np.int64).tolist())
    table = pa.concat_tables([pq.read_table(f, columns=cols, filters=flt) for f in files])
    batch = schema.batch_from_arrow(table, str(tables))
    if operators is None:
        return batch
    pos = {int(g): r for r, g in enumerate(batch.operator_index)}
    missing = [int(i) for i in operators if int(i) not in pos]
    if missing:
        raise DataError(f"operator(s) {missing[:8]} not in {tables}")
    return batch.select(np.array([pos[int(i)] for i in operators], np.int64))


def encode_operators(tokenizer: Tokenizer, run_dir: str | Path, operators: np.ndarray | list[int]) -> np.ndarray:
    """Tokens [len(operators), positions] of operators of any run (its features and, for a tokenizer with
    an IC branch, its stored initial conditions), encoded in-process with a trained ``tokenizer``."""
    # deferred: the reader imports the feature modules (SciPy), which only an IC branch's lookup needs
    from spinlock.storage.reader import dataset_file

    ops = np.asarray(operators, np.int64)
    batch = read_feature_batch(run_dir, tokenizer.cleaner.schema, ops)
    ic = None
    if tokenizer.spec.ic_channels:
        reader = ICReader(dataset_file(run_dir))
        try:
            if tuple(reader.shape) != tokenizer.ic_shape:
                raise DataError(f"{run_dir}: initial conditions are {tuple(reader.shape)}, the tokenizer expects"
                                f" {tokenizer.ic_shape}")
            ic = reader.read(ops)
        finally:
            reader.close()
    return tokenizer.encode(batch, ic).tokens

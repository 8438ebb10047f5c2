"""Nearest-behaviour search over tokens: the distance between what token prefixes decode to, and its index.

Distance (depth ``L`` = 1, 2 or 3 levels). Let ``x̂_L(t)`` [D'] be the tokenizer's reconstruction of the
cleaned scalar features (:meth:`~spinlock.encoding.tokenizer.Tokenizer.decode`) from levels 1..L of every
stream of the tokens ``t`` (the levels the layout does not emit take their one code), and ``P_L`` [m, D']
the first ``m`` principal axes of the reconstructions ``x̂_L`` of the indexed operators: the fewest that keep
:data:`KEEP_VARIANCE` of their variance, at most :data:`MAX_COMPONENTS` (fitted on at most :data:`FIT_ROWS` of
them, evenly spaced; mean ``μ_L``). Every operator is the
vector ``v_L(t) = P_L (x̂_L(t) - μ_L)`` [m] float32 and::

    d_L(a, b) = || v_L(a) - v_L(b) ||_2  =  || P_L (x̂_L(a) - x̂_L(b)) ||_2

the Euclidean distance between the two reconstructions within the principal subspace (it equals the full
distance when the dropped axes hold no variance; :attr:`Projection.explained` gives the share kept).
Why this distance: the ground truth of "similar behaviour" is the Euclidean distance of the cleaned
features, and the reconstruction is what the tokens say about them. Comparing the codes themselves
(the former coarse-to-fine prefix match) ignores how far apart two codes are: recall@10 0.09 where this
distance gets 0.81 (docs/tokenizer.md, "Nearest-behaviour search"). ``d_L`` is a
pseudometric (0 for equal token prefixes, symmetric, triangle inequality); depth 1 compares coarse
tokens only, so a truncated token sequence is searchable on its own.

Index (:class:`VectorIndex`, faiss). Up to :data:`EXACT_MAX_ROWS` operators an exact ``IndexFlatL2`` (a
scan; results equal brute force). Above, ``IndexIVFFlat`` with ``nlist = round(4 sqrt(N))`` lists
(k-means on :data:`TRAIN_PER_LIST` · nlist sampled vectors): a query scans the ``nprobe`` lists nearest to
it, with exact distances inside them. ``nprobe`` is tuned when the index is built: the smallest power of
two whose recall@10 against the exact search over :data:`TUNE_QUERIES` sampled operators is at least
:data:`TARGET_RECALL` (a result counts when its distance is within the exact 10th-neighbour distance, so
ties are not misses); :attr:`VectorIndex.recall` holds the measured value.

Vectors (:class:`SearchIndex`). They depend only on the run's tokens and the tokenizer, so they are
computed at the first query, not by ``tokenize``/``encode`` (a run that is never searched pays nothing;
a million operators take 384 MB per depth at m = 96), and :meth:`SearchIndex.open` caches the index and the
projection in ``OUT/search/`` keyed by digests of ``/tokens`` and of the tokenizer's weights: any change
of either rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
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
from spinlock.storage.durable import durable_replace
from spinlock.storage.layout import DATASET_FILE, FEATURES_DIR, SEARCH_DIR, TOKENIZER_DIGEST_ATTR

if TYPE_CHECKING:
    import faiss

    from spinlock.encoding.tokenizer import Tokenizer

KEEP_VARIANCE = 0.99
"""Share of the reconstructions' variance the principal axes of the operator vectors keep (the fewest axes
that do). Why a share and not a fixed count: finer token levels decode to more independent directions
(format-5 tokenizer, 4096-operator run: 76 / 111 / 187 axes at depth 1 / 2 / 3), and 96 fixed axes lost
0.046 recall@10 at depth 3 (docs/tokenizer.md, "Nearest-behaviour search")."""
MAX_COMPONENTS = 256
"""Most principal axes per operator vector: 1 KiB of float32 per operator and depth."""
FIT_ROWS = 65_536
"""Operators (evenly spaced) whose reconstructions the projection is fitted on."""
EXACT_MAX_ROWS = 100_000
"""Largest index searched exactly (a flat scan); larger ones get an IVF index."""
TARGET_RECALL = 0.95
"""recall@10 of the IVF index against the exact search that ``nprobe`` is tuned to reach."""
TUNE_QUERIES = 256
"""Sampled operators ``nprobe`` is tuned on."""
TRAIN_PER_LIST = 64
"""Sampled vectors per IVF list its k-means is trained on."""
CACHE_FORMAT = 2


@dataclass(frozen=True)
class Neighbors:
    rows: np.ndarray
    """[k] int64 rows of the indexed tokens, nearest first (ties by row)."""
    distances: np.ndarray
    """[k] float64 distances."""


@dataclass(frozen=True)
class Projection:
    """Centre and principal axes that map reconstructions [n, D'] to operator vectors [n, m]."""

    mean: np.ndarray
    """[D'] float64."""
    components: np.ndarray
    """[m, D'] float64 orthonormal rows, by decreasing variance."""
    explained: float
    """Share of the fit rows' variance the ``m`` axes keep."""

    @classmethod
    def fit(cls, x: np.ndarray, keep: float | None = None,
            max_components: int = MAX_COMPONENTS) -> Projection:
        """The fewest principal axes of ``x`` [n, D'] (eigenvectors of its covariance) that keep ``keep``
        (default :data:`KEEP_VARIANCE`) of its variance, at most ``max_components``; the sign of each axis
        makes its largest entry positive, so the vectors are reproducible."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"the projection needs [n >= 1, D'] reconstructions, got {x.shape}")
        mean = x.mean(0)
        xc = x - mean
        w, v = np.linalg.eigh(xc.T @ xc)
        w, v = w[::-1].clip(0), v[:, ::-1]
        total = float(w.sum())
        keep = KEEP_VARIANCE if keep is None else keep
        reached = int(np.searchsorted(np.cumsum(w) / total, keep * (1 - 1e-12)) + 1) if total > 0 else 1
        m = min(reached, max_components, x.shape[1])
        w, v = w[:m], v[:, :m].T
        v *= np.sign(v[np.arange(m), np.abs(v).argmax(1)])[:, None]
        return cls(mean, v, float(w.sum() / total) if total > 0 else 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) @ self.components.T).astype(np.float32)


def behaviour_vectors(tokenizer: Tokenizer, tokens: np.ndarray, levels: int = LEVELS,
                      projection: Projection | None = None, max_components: int = MAX_COMPONENTS,
                      block: int = 65_536) -> tuple[np.ndarray, Projection]:
    """Operator vectors ``v_L`` [N, m] float32 of ``tokens`` [N, positions] at depth ``levels``, and the
    projection (fitted on these tokens' reconstructions unless given). Decoded in blocks: memory is one
    block's reconstructions, not [N, D']."""
    check_levels(levels)
    tokens = np.asarray(tokens)
    n = len(tokens)
    if projection is None:
        if n == 0:
            raise DataError("no tokens to fit the search projection on")
        fit = np.unique(np.linspace(0, n - 1, min(n, FIT_ROWS)).round().astype(np.int64))
        projection = Projection.fit(tokenizer.decode(tokens[fit], levels), max_components=max_components)
    out = np.zeros((n, len(projection.components)), np.float32)
    for lo in range(0, n, block):
        out[lo:lo + block] = projection(tokenizer.decode(tokens[lo:lo + block], levels))
    return out, projection


def check_levels(levels: int) -> None:
    if not 1 <= levels <= LEVELS:
        raise DataError(f"levels must be in 1..{LEVELS}, got {levels}")


class VectorIndex:
    """k nearest vectors by Euclidean distance: exact (flat) up to ``exact_max_rows``, IVF above (module
    docstring)."""

    def __init__(self, index: faiss.Index, recall: float | None = None):
        self.index = index
        self.recall = recall
        """recall@10 of the IVF index against exact search when it was built (None: exact index)."""

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def exact(self) -> bool:
        import faiss

        return isinstance(self.index, faiss.IndexFlat)

    @property
    def nbytes(self) -> int:
        """Memory of the stored vectors, ids and list centroids."""
        if self.exact:
            return self.n * self.dim * 4
        return self.n * (self.dim * 4 + 8) + int(self.index.nlist) * self.dim * 4

    def describe(self) -> str:
        if self.exact:
            return f"exact flat index of {self.n} vectors"
        return (f"IVF index of {self.n} vectors, {self.index.nlist} lists, nprobe {self.index.nprobe}"
                f" (recall@10 {self.recall:.3f} of exact when built)")

    @classmethod
    def build(cls, vectors: np.ndarray, exact_max_rows: int = EXACT_MAX_ROWS, seed: int = 0) -> VectorIndex:
        import faiss

        x = np.ascontiguousarray(vectors, np.float32)
        if x.ndim != 2 or x.shape[1] < 1:
            raise DataError(f"vectors to index must be [N, m >= 1], got {x.shape}")
        n, m = x.shape
        if n <= exact_max_rows:
            flat = faiss.IndexFlatL2(m)
            flat.add(x)
            return cls(flat)
        rng = np.random.default_rng(seed)
        nlist = max(1, round(4 * math.sqrt(n)))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(m), m, nlist)
        ivf.cp.seed = seed
        ivf.train(x[np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))])
        ivf.add(x)
        queries = np.sort(rng.choice(n, min(n, TUNE_QUERIES), replace=False))
        k = min(10, n - 1)
        exact_d, _ = faiss.knn(x[queries], x, k + 1)
        kth = exact_d[:, k]  # the k-th neighbour's distance² (the query itself is at 0)
        nprobe = 1
        while True:
            ivf.nprobe = nprobe
            d, ids = ivf.search(x[queries], k + 1)
            hits = [(dq[(iq != q) & (iq >= 0)][:k] <= kq * (1 + 1e-5) + 1e-12).sum()
                    for q, dq, iq, kq in zip(queries, d, ids, kth, strict=True)]
            recall = float(np.mean(hits)) / k
            if recall >= TARGET_RECALL or nprobe >= nlist:
                return cls(ivf, recall)
            nprobe = min(2 * nprobe, nlist)

    def search(self, queries: np.ndarray, k: int = 10, exclude: np.ndarray | list[int] | None = None) -> Neighbors:
        """The ``k`` rows nearest to one query vector [m] (``exclude``: rows never returned), nearest first."""
        if k < 1:
            raise DataError(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise DataError(f"query vector has {q.shape[1]} components, the index {self.dim}")
        skip = set() if exclude is None else {int(r) for r in np.asarray(exclude).ravel()}
        want = min(k + len(skip), self.n)
        if want == 0:
            return Neighbors(np.zeros(0, np.int64), np.zeros(0))
        d, ids = self.index.search(q, want)
        keep = [j for j, r in enumerate(ids[0]) if r >= 0 and int(r) not in skip]
        rows, dist = ids[0][keep].astype(np.int64), np.sqrt(np.maximum(d[0][keep], 0)).astype(np.float64)
        order = np.lexsort((rows, dist))[:k]
        return Neighbors(rows[order], dist[order])

    def save(self, path: Path) -> None:
        import faiss

        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        durable_replace(tmp, path)

    @classmethod
    def load(cls, path: Path, recall: float | None) -> VectorIndex:
        import faiss

        return cls(faiss.read_index(str(path)), recall)


class SearchIndex:
    """The operators of a tokenized run, searchable by :math:`d_L` (module docstring) at ``levels``."""

    def __init__(self, tokenizer: Tokenizer, levels: int, projection: Projection, index: VectorIndex):
        check_levels(levels)
        self.tokenizer = tokenizer
        self.levels = levels
        self.projection = projection
        self.index = index
        self.seconds = 0.0
        """Time :meth:`open` spent building (0 when it loaded the cache)."""

    @classmethod
    def build(cls, tokenizer: Tokenizer, tokens: np.ndarray, levels: int = LEVELS,
              exact_max_rows: int = EXACT_MAX_ROWS) -> SearchIndex:
        """Index ``tokens`` [N, positions] (the tokenizer's layout) in memory."""
        vectors, projection = behaviour_vectors(tokenizer, tokens, levels)
        return cls(tokenizer, levels, projection, VectorIndex.build(vectors, exact_max_rows))

    def vectors(self, tokens: np.ndarray) -> np.ndarray:
        """Operator vectors [n, m] of ``tokens`` [n, positions] (any operators encoded with the tokenizer)."""
        return behaviour_vectors(self.tokenizer, np.atleast_2d(tokens), self.levels, self.projection)[0]

    def query(self, tokens: np.ndarray, k: int = 10, exclude: np.ndarray | list[int] | None = None) -> Neighbors:
        """The ``k`` indexed rows nearest to one operator's ``tokens`` [positions], nearest first;
        ``exclude``: rows never returned (e.g. the query operator's own row)."""
        t = np.asarray(tokens)
        if t.shape != (self.tokenizer.n_tokens,):
            raise DataError(f"query tokens have shape {t.shape}, the layout has {self.tokenizer.n_tokens} positions")
        return self.index.search(self.vectors(t)[0], k, exclude)

    @classmethod
    def open(cls, run_dir: str | Path, tokenizer: Tokenizer, levels: int = LEVELS) -> SearchIndex:
        """The index of ``run_dir``'s ``/tokens`` (rows in ``dataset.h5`` order), loaded from
        ``run_dir/search/`` when it was built from the same tokens and tokenizer, else built and saved there."""
        import h5py

        check_levels(levels)
        path = Path(run_dir) / DATASET_FILE
        with h5py.File(path, "r") as f:
            if "tokens" not in f:
                raise DataError(f"{path}: no /tokens (run 'spinlock tokenize' or 'spinlock encode' first)")
            tokens = f["tokens"][()]
            layout = TokenLayout.from_attrs(f["tokens"].attrs, f"{path}:/tokens")
            written_by = f["tokens"].attrs.get(TOKENIZER_DIGEST_ATTR)
        digest = tokenizer.digest()  # hashes every weight: once per open
        check_layout(tokenizer, layout, str(path), None if written_by is None else str(written_by), digest)
        key = {"format": CACHE_FORMAT, "levels": levels, "keep": KEEP_VARIANCE,
               "max_components": MAX_COMPONENTS, "fit_rows": FIT_ROWS,
               "tokens": _digest(tokens), "tokenizer": digest}
        folder = Path(run_dir) / SEARCH_DIR
        meta_path, index_path = folder / f"levels-{levels}.npz", folder / f"levels-{levels}.faiss"
        if meta_path.is_file() and index_path.is_file():
            with np.load(meta_path) as z:
                meta = json.loads(str(z["meta"]))
                if meta["key"] == key:
                    projection = Projection(z["mean"], z["components"], meta["explained"])
                    return cls(tokenizer, levels, projection, VectorIndex.load(index_path, meta["recall"]))
        t0 = time.perf_counter()
        index = cls.build(tokenizer, tokens, levels)
        index.seconds = time.perf_counter() - t0
        folder.mkdir(parents=True, exist_ok=True)
        index.index.save(index_path)
        meta = {"key": key, "explained": index.projection.explained, "recall": index.index.recall}
        tmp = meta_path.with_name(meta_path.name + ".tmp.npz")
        np.savez(tmp, mean=index.projection.mean, components=index.projection.components, meta=json.dumps(meta))
        durable_replace(tmp, meta_path)
        return index

    def describe(self) -> str:
        return (f"L2 of the cleaned features decoded from token levels 1..{self.levels}, in"
                f" {len(self.projection.components)} principal components ({100 * self.projection.explained:.2f} %"
                f" of their variance); {self.index.describe()}")


def check_layout(tokenizer: Tokenizer, layout: TokenLayout, source: str, written_by: str | None, digest: str) -> None:
    """Raise DataError unless ``layout`` (of stored tokens) is the tokenizer's and, when the tokens name
    the tokenizer that wrote them (``written_by``, ``/tokens`` attribute ``tokenizer_digest``), it is this
    one (``digest``: :meth:`Tokenizer.digest`)."""
    if [p.to_json() for p in tokenizer.layout.positions] != [p.to_json() for p in layout.positions]:
        raise DataError(f"the tokenizer's token layout ({tokenizer.n_tokens} positions) is not the one of"
                        f" {source}:/tokens ({len(layout.positions)}): give the tokenizer that wrote them, or encode"
                        " the run with this one first ('spinlock encode DIR --tokenizer ...')")
    if written_by is not None and written_by != digest:
        raise DataError(f"{source}:/tokens were written by another tokenizer (digest {written_by}, this one"
                        f" {digest}): its codes mean something else here; give the tokenizer that"
                        " wrote them, or encode the run with this one first ('spinlock encode DIR --tokenizer ...')")


def _digest(a: np.ndarray) -> str:
    h = hashlib.blake2b(f"{a.dtype}{a.shape}".encode(), digest_size=16)
    h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def nearest(distances: np.ndarray, k: int, exclude: np.ndarray | list[int] | None = None) -> Neighbors:
    """The ``k`` smallest of ``distances`` [N] ordered by (distance, row), skipping ``exclude`` rows: the
    brute-force reference."""
    d = np.asarray(distances).astype(np.float64)
    if exclude is not None:
        d[np.asarray(exclude, np.int64)] = np.inf
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    k = min(k, int(np.isfinite(d).sum()))
    if k == 0:
        return Neighbors(np.zeros(0, np.int64), np.zeros(0))
    kth = np.partition(d, k - 1)[k - 1]
    below = np.flatnonzero(d < kth)
    rows = np.concatenate([below, np.flatnonzero(d == kth)[:k - len(below)]])
    rows = rows[np.lexsort((rows, d[rows]))]
    return Neighbors(rows.astype(np.int64), d[rows])


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

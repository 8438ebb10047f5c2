"""Nearest-behaviour search benchmark (not a test): recall of the search distance, and the index at scale.

    PYTHONPATH=. python bench/search.py recall DIR [--png docs/search-neighbors.png]
    PYTHONPATH=. python bench/search.py scale DIR --n 1000000 [--queries 200]

``recall``: on a tokenized run, the ground truth for each converged operator is its 10 nearest converged
operators (itself excluded) by Euclidean distance in the tokenizer's cleaned scalar-feature space
(``tokenizer/cleaning.npz`` applied to the run's feature tables). Recall@10 of the search distance
(``spinlock.encoding.search``: L2 between the features decoded from token prefixes of depth 1, 2 and 3,
in the fewest principal axes keeping ``KEEP_VARIANCE`` of the variance; the projection fitted on every
row's reconstruction as the product does, the candidates the converged rows) is compared with PCA + PQ
codes with as many codes per operator as the tokens at that depth have positions: PCA fitted on the
tokenizer's training rows (converged, training split), 2 components per subspace (fewer when the cleaned
features have fewer columns than 2 × positions), k-means with 256 codes per subspace (at most the
training rows) fitted on the training rows, and the symmetric (code-to-code) PQ distance. Ties count by
their expected share (every order of a tie equally likely). Also reported: the same distance with every
reconstructed column (no projection), the share of variance the projection keeps, and a random ranking
(10 / N). ``--png``: the query (first converged operator) and its 10 nearest at depth 3, final frames.

``scale``: N synthetic operators in DIR's token layout, each position's code drawn independently from
its frequency among DIR's operators (independent streams: less clustered than real tokens, so the IVF
lists are less helpful than on real data), decoded and projected with DIR's tokenizer (depth 3). Times
the vectors, the index build (IVF above ``EXACT_MAX_ROWS``: k-means, adding, ``nprobe`` tuning), its
memory, and the mean time of ``--queries`` queries by other sampled operators: the index search alone,
the whole query from tokens (decode + project + search), and an exact flat scan of the same vectors,
with the index's recall@10 against that scan.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock.encoding.search import (  # noqa: E402
    EXACT_MAX_ROWS,
    SearchIndex,
    VectorIndex,
    behaviour_vectors,
    nearest,
    read_feature_batch,
)

K = 10


def expected_recall(dist: np.ndarray, truth: set[int], k: int) -> float:
    """Expected |top-k ∩ truth| / k when ties in ``dist`` are broken uniformly at random."""
    order = np.sort(np.unique(dist))
    got, left = 0.0, k
    for v in order:
        group = np.flatnonzero(dist == v)
        hits = sum(int(r) in truth for r in group)
        if len(group) <= left:
            got += hits
            left -= len(group)
        else:
            got += hits * left / len(group)
            left = 0
        if left == 0:
            break
    return got / k


def pq_codes(train: np.ndarray, x: np.ndarray, m: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """PCA (fit on ``train``) then per-subspace k-means: codes [N, m] and each subspace's centroids."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    dims = min(2 * m, x.shape[1], len(train))
    pca = PCA(n_components=dims, random_state=seed).fit(train)
    zt, zx = pca.transform(train), pca.transform(x)
    parts = [p for p in np.array_split(np.arange(dims), m) if len(p)]
    codes, books = [], []
    for p in parts:
        km = KMeans(n_clusters=min(256, len(train)), n_init=1, random_state=seed).fit(zt[:, p])
        codes.append(km.predict(zx[:, p]))
        books.append(km.cluster_centers_)
    return np.stack(codes, 1), books


def pq_distances(codes: np.ndarray, books: list[np.ndarray], i: int) -> np.ndarray:
    """Symmetric PQ distance² from row ``i`` to every row."""
    d = np.zeros(len(codes))
    for j, b in enumerate(books):
        table = ((b - b[codes[i, j]]) ** 2).sum(1)
        d += table[codes[:, j]]
    return d


def scan_recall(z: np.ndarray, truth: list[set[int]]) -> float:
    """Mean expected recall@K of brute-force Euclidean distances between the rows of ``z``."""
    z = np.asarray(z, np.float64)
    g = (z ** 2).sum(1)
    r = []
    for a in range(len(z)):
        d = np.maximum(g - 2 * z @ z[a] + g[a], 0)
        d[a] = np.inf
        r.append(expected_recall(d, truth[a], K))
    return float(np.mean(r))


def load_run(run: Path):  # noqa: ANN201
    import h5py

    from spinlock.encoding.tokenizer import Tokenizer

    tok = Tokenizer.load(run / "tokenizer")
    with h5py.File(run / "dataset.h5", "r") as f:
        index, status, tokens = f["operators/index"][()], f["status"][()], f["tokens"][()]
    return tok, index, status, tokens


def recall(run: Path, png: Path | None) -> None:
    from spinlock.encoding.split import Split

    tok, index, status, tokens = load_run(run)
    x = tok.cleaner.transform(read_feature_batch(run, tok.cleaner.schema, index)).x.astype(np.float64)
    ok = np.flatnonzero(status == 0)
    split_cfg = tok.config.get("tokenizer", tok.config)
    train = ok[~Split(tok.seed, float(split_cfg.get("validation_fraction", 0.1))).is_validation(index[ok])]
    xo, n = x[ok], len(ok)
    print(f"run {run}: {len(index)} operators, {n} converged, {len(train)} training rows,"
          f" {x.shape[1]} cleaned scalar features, {tokens.shape[1]} token positions")
    t0 = time.perf_counter()
    truth = [set(nearest(np.maximum(((xo - xo[a]) ** 2).sum(1), 0), K, [a]).rows.tolist()) for a in range(n)]
    pos_train = np.searchsorted(ok, train)
    levels_of = np.array([p.level for p in tok.layout.positions])
    rows = []
    for levels in (1, 2, 3):
        positions = int((levels_of <= levels).sum())
        vectors, proj = behaviour_vectors(tok, tokens, levels)
        index_nb = VectorIndex.build(vectors[ok])
        same = np.mean([set(index_nb.search(vectors[ok][a], K, [a]).rows.tolist())
                        == set(nearest(((vectors[ok] - vectors[ok][a]) ** 2).sum(1), K, [a]).rows.tolist())
                        for a in range(0, n, max(1, n // 200))])
        r_vec = scan_recall(vectors[ok], truth)
        r_full = scan_recall(tok.decode(tokens[ok], levels), truth)
        codes, books = pq_codes(xo[pos_train], xo, positions)
        r_pq = []
        for a in range(n):
            d = pq_distances(codes, books, a)
            d[a] = np.inf
            r_pq.append(expected_recall(d, truth[a], K))
        rows.append((levels, positions, r_vec, proj, r_full, float(np.mean(r_pq)), same))
    print(f"\nrecall@{K} over {n} converged queries (ground truth: Euclidean, cleaned scalar features);"
          f" {time.perf_counter() - t0:.0f} s\n")
    print("| token depth | positions | search distance (principal axes, variance kept) |"
          " same distance, every column | PCA + PQ, as many codes |\n|---|---|---|---|---|")
    for levels, positions, r_vec, proj, r_full, r_pq, _ in rows:
        print(f"| levels 1..{levels} | {positions} | **{r_vec:.3f}** ({len(proj.components)} axes,"
              f" {100 * proj.explained:.2f} %) | {r_full:.3f}"
              f" | {r_pq:.3f} |")
    print(f"\nrandom ranking: {K / (n - 1):.4f}; the index's top {K} equals the brute-force top {K} for"
          f" {', '.join(f'{100 * r[-1]:.0f} %' for r in rows)} of sampled queries (depth 1, 2, 3)")
    if png is not None:
        from spinlock.cli.neighbors import render_neighbors
        from spinlock.viz.rundata import RunData

        data = RunData(run)
        if data.trajectory_shape is None:
            print(f"{run}: no stored trajectories, no picture")
            return
        ix = SearchIndex.open(run, tok)
        q = int(ok[0])
        render_neighbors(data, q, ix.query(tokens[q], K, [q]), png)
        print(f"wrote {png} (query: operator {int(index[q])})")


def synthetic_tokens(tokens: np.ndarray, sizes: list[int], n: int, seed: int = 0) -> np.ndarray:
    """[n, positions] codes drawn per position from its frequency in ``tokens``."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, tokens.shape[1]), np.int32)
    for j, k in enumerate(sizes):
        p = np.bincount(tokens[:, j], minlength=k).astype(np.float64)
        out[:, j] = rng.choice(k, n, p=p / p.sum())
    return out


def scale(run: Path, n: int, queries: int) -> None:
    import faiss

    tok, _, _, tokens = load_run(run)
    syn = synthetic_tokens(tokens, [p.codebook_size for p in tok.layout.positions], n + queries)
    base, probe = syn[:n], syn[n:]
    t0 = time.perf_counter()
    vectors, proj = behaviour_vectors(tok, base, 3)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    vi = VectorIndex.build(vectors)
    t_build = time.perf_counter() - t0
    index = SearchIndex(tok, 3, proj, vi)
    qv = behaviour_vectors(tok, probe, 3, proj)[0]
    t0 = time.perf_counter()
    got = [vi.search(v, K) for v in qv]
    t_search = (time.perf_counter() - t0) / queries
    t0 = time.perf_counter()
    for t in probe:
        index.query(t, K)
    t_query = (time.perf_counter() - t0) / queries
    flat = faiss.IndexFlatL2(vectors.shape[1])
    flat.add(vectors)
    t0 = time.perf_counter()
    exact_d = [flat.search(v[None], K)[0][0] for v in qv]
    t_flat = (time.perf_counter() - t0) / queries
    hits = [(nb.distances ** 2 <= d[-1] * (1 + 1e-5) + 1e-12).sum() for nb, d in zip(got, exact_d, strict=True)]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"machine: {platform.processor() or platform.machine()}; N = {n} synthetic operators in the layout of"
          f" {run} ({tokens.shape[1]} positions), {vectors.shape[1]} components"
          f" ({100 * proj.explained:.2f} % of variance); exact up to {EXACT_MAX_ROWS}")
    print(f"index: {vi.describe()}")
    print("| N | vectors (s) | index build (s) | index memory (MiB) | search (ms) | query from tokens (ms) |"
          " exact flat scan (ms) | recall@10 vs exact | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|")
    print(f"| {n} | {t_vec:.1f} | {t_build:.1f} | {vi.nbytes / 2**20:.0f} | {1e3 * t_search:.2f} |"
          f" {1e3 * t_query:.2f} | {1e3 * t_flat:.1f} | {np.mean(hits) / K:.3f} | {rss:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("recall")
    r.add_argument("run", type=Path)
    r.add_argument("--png", type=Path, default=None)
    s = sub.add_parser("scale")
    s.add_argument("run", type=Path, help="tokenized run: its tokenizer and code frequencies")
    s.add_argument("--n", type=int, default=1_000_000)
    s.add_argument("--queries", type=int, default=200, help="queries timed (sampled operators not in the index)")
    args = ap.parse_args()
    if args.what == "recall":
        recall(args.run, args.png)
    else:
        scale(args.run, args.n, args.queries)


if __name__ == "__main__":
    main()

"""Nearest-behaviour search benchmark (not a test): recall of the token prefix distance, and index speed.

    PYTHONPATH=. python bench/search.py recall /tmp/tok4k [--png docs/search-neighbors.png]
    PYTHONPATH=. python bench/search.py scale --n 1000000 [--queries 200]

``recall``: on a tokenized run, the ground truth for each converged operator is its 10 nearest
converged operators (itself excluded) by Euclidean distance in the tokenizer's cleaned scalar-feature
space (``tokenizer/cleaning.npz`` applied to the run's feature tables). Recall@10 of the token prefix
distance (``spinlock.encoding.search``, at prefix depth 1, 2 and 3 levels) is compared with PCA + PQ
codes with the same number of codes per operator as the tokenizer's informative positions: PCA fitted
on the tokenizer's training rows (converged, training split), 2 components per subspace (fewer when
the cleaned features have fewer columns than 2 × positions), k-means with 256 codes per subspace (at
most the training rows) fitted on the training rows, and the symmetric (code-to-code) PQ distance.
Token distances are integers and tie; recall counts a tie group straddling rank 10 by its expected
share (every order of the tie equally likely). Also reported: a random ranking's recall (10 / N), and as
references (brute-force scans, not the index) L2 between the tokens decoded to quantized latents (sum of
each stream's codebook vectors) and between their reconstructions of the cleaned features.

``scale``: synthetic tokens for N operators in the layout of 32 streams × 3 levels × 16 codes (coarse
codes Zipf-skewed, as trained codebooks are), index build time, then the mean query time of the index
(k = 10) over ``--queries`` random rows and of a vectorised brute-force scan of the same codes over the
last ``--scans`` of them.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock.encoding.layout import Position, TokenLayout  # noqa: E402
from spinlock.encoding.search import TokenIndex, nearest, read_feature_batch  # noqa: E402


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


def decoded(tok, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 (a Tokenizer)
    """Sum of the codebook vectors of every level per stream (quantized latents [N, E·L]), and the model's
    reconstruction of the cleaned scalar features from them [N, D']."""
    import torch

    from spinlock.encoding.model import LEVELS

    layout = tok.layout
    full = np.zeros((len(tokens), len(layout.streams), LEVELS), np.int64)
    for p, c in layout.dropped:
        full[:, layout.streams.index(p.stream), p.level - 1] = c
    for j, p in enumerate(layout.positions):
        full[:, layout.streams.index(p.stream), p.level - 1] = tokens[:, j]
    with torch.no_grad():
        lat = torch.cat([rvq.get_codes_from_indices(torch.from_numpy(full[:, e][:, None, :])).sum(0)[:, 0]
                         for e, rvq in enumerate(tok.model.quantizers)], 1)
        rx = tok.model.decode(lat)[0]
    return lat.numpy().astype(np.float64), rx.numpy().astype(np.float64)


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


def recall(run: Path, png: Path | None) -> None:
    import h5py

    from spinlock.encoding.split import Split
    from spinlock.encoding.tokenizer import Tokenizer

    tok = Tokenizer.load(run / "tokenizer")
    with h5py.File(run / "dataset.h5", "r") as f:
        index = f["operators/index"][()]
        status = f["status"][()]
        tokens = f["tokens"][()]
        layout = TokenLayout.from_attrs(f["tokens"].attrs)
    batch = read_feature_batch(run, tok.cleaner.schema, index)
    x = tok.cleaner.transform(batch).x.astype(np.float64)
    ok = np.flatnonzero(status == 0)
    split_cfg = tok.config.get("tokenizer", tok.config)
    frac = float(split_cfg.get("validation_fraction", 0.1))
    train = ok[~Split(tok.seed, frac).is_validation(index[ok])]
    xo = x[ok]
    n = len(ok)
    print(f"run {run}: {len(index)} operators, {n} converged, {len(train)} training rows,"
          f" {x.shape[1]} cleaned scalar features, {tokens.shape[1]} token positions")
    k = 10
    gram = (xo ** 2).sum(1)
    truth = []
    for a in range(n):
        d = gram - 2 * xo @ xo[a] + gram[a]
        truth.append(set(nearest(d, k, [a]).rows.tolist()))
    results = {}
    for levels in (1, 2, 3):
        ix = TokenIndex(tokens[ok], layout, levels)
        r = []
        for a in range(n):
            d = ix.distances(tokens[ok][a]).astype(np.float64)
            d[a] = np.inf
            r.append(expected_recall(d, truth[a], k))
        results[f"tokens, levels 1..{levels} ({len(ix.columns)} positions)"] = float(np.mean(r))
    pos_train = np.searchsorted(ok, train)
    codes, books = pq_codes(xo[pos_train], xo, tokens.shape[1])
    r = []
    for a in range(n):
        d = pq_distances(codes, books, a)
        d[a] = np.inf
        r.append(expected_recall(d, truth[a], k))
    results[f"PCA + PQ ({codes.shape[1]} codes, symmetric distance)"] = float(np.mean(r))
    for name, z in zip(("tokens decoded to quantized latents, L2 (scan, reference)",
                        "tokens decoded to cleaned features, L2 (scan, reference)"), decoded(tok, tokens), strict=True):
        zo = z[ok]
        g = (zo ** 2).sum(1)
        r = []
        for a in range(n):
            d = g - 2 * zo @ zo[a] + g[a]
            d[a] = np.inf
            r.append(expected_recall(d, truth[a], k))
        results[name] = float(np.mean(r))
    results["random ranking"] = k / (n - 1)
    print(f"\nrecall@{k} over {n} converged queries (ground truth: Euclidean, cleaned scalar features)\n")
    print("| codes | recall@10 |\n|---|---|")
    for name, v in results.items():
        print(f"| {name} | {v:.3f} |")
    if png is not None:
        from spinlock.cli.neighbors import render_neighbors
        from spinlock.viz.rundata import RunData

        data = RunData(run)
        ix = TokenIndex(tokens, layout)
        q = int(ok[0])
        nb = ix.query(tokens[q], k, [q])
        if data.trajectory_shape is None:
            print(f"{run}: no stored trajectories, no picture")
        else:
            render_neighbors(data, q, nb, png)
            print(f"wrote {png}")


def synthetic_tokens(n: int, streams: int = 32, codes: int = 16, seed: int = 0) -> tuple[np.ndarray, TokenLayout]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, codes + 1)
    p /= p.sum()
    cols = []
    for _ in range(streams):
        cols.append(rng.choice(codes, n, p=p))
        cols.append(rng.integers(0, codes, n))
        cols.append(rng.integers(0, codes, n))
    layout = TokenLayout(tuple(f"s{s}" for s in range(streams)),
                         tuple(Position(f"s{s}", lv, codes) for s in range(streams) for lv in (1, 2, 3)))
    return np.stack(cols, 1).astype(np.int32), layout


def scale(n: int, queries: int, scans: int) -> None:
    tokens, layout = synthetic_tokens(n)
    t0 = time.perf_counter()
    ix = TokenIndex(tokens, layout)
    build = time.perf_counter() - t0
    rows = np.random.default_rng(1).integers(0, n, queries)
    t0 = time.perf_counter()
    for r in rows:
        res = ix.query(tokens[r], 10, [r])
    t_index = (time.perf_counter() - t0) / queries
    t0 = time.perf_counter()
    for r in rows[-scans:]:
        ref = nearest(ix.scan(tokens[r]), 10, [r])
    t_scan = (time.perf_counter() - t0) / len(rows[-scans:])
    assert (res.rows == ref.rows).all()  # the last query, both ways
    mib = ix.nbytes / 2**20
    print(f"machine: {platform.processor() or platform.machine()}; N = {n}, {tokens.shape[1]} positions")
    print("| N | build (s) | index memory (MiB) | posting entries read per query | index query (ms) |"
          " brute-force scan (ms) |\n|---|---|---|---|---|---|")
    read = np.mean([sum(len(p) for p, _ in ix.postings(tokens[r])) for r in rows])
    print(f"| {n} | {build:.1f} | {mib:.0f} | {read:.0f} | {1e3 * t_index:.1f} | {1e3 * t_scan:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("recall")
    r.add_argument("run", type=Path)
    r.add_argument("--png", type=Path, default=None)
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=1_000_000)
    s.add_argument("--queries", type=int, default=200, help="index queries timed")
    s.add_argument("--scans", type=int, default=10, help="brute-force scans timed (the last queries)")
    args = ap.parse_args()
    if args.what == "recall":
        recall(args.run, args.png)
    else:
        scale(args.n, args.queries, args.scans)


if __name__ == "__main__":
    main()

"""Validation R² against informative tokens per operator: a tokenized run's tokenizer and a PCA + PQ code
of the same size, on the same cleaned features and the same split (``bench/tokenizer_frontier.py`` and
the report's frontier plot).

**Data.** The run's features (``features/shard-*.parquet``) through the tokenizer's own fitted
``FeatureCleaner`` (``tokenizer/cleaning.npz``): training rows are its fit rows (training split,
status 0), validation rows the converged operators of its validation split, the rows the tokenizer
reports its validation R² on. R² is pooled over columns (:class:`~spinlock.encoding.metrics.R2Accumulator`).

**PCA + PQ.** PCA of the training rows to 2B components, then k-means with K codes (sklearn, seeded,
``n_init=1``) per 2-D subspace (components 2j, 2j+1): B tokens of log2 K bits each. Subspaces are
ordered by variance, so the k-means of subspace j is the same at every budget containing it and is
fitted once.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import torch
from sklearn.cluster import KMeans

from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.metrics import R2Accumulator
from spinlock.encoding.schema import FeatureSchema
from spinlock.errors import DataError
from spinlock.storage.layout import (
    CLEANING_FILE,
    DATASET_FILE,
    FEATURES_DIR,
    FRONTIER_FILE,
    META_FILE,
    SUMMARY_FILE,
    TOKENIZER_DIR,
)

SUBSPACE_DIM = 2  # PCA components per PQ token


def load_split(run: Path, cleaner: FeatureCleaner, max_rows: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Cleaned (train, validation) arrays of the run: ``scalar`` [n, D'], ``temporal`` [n, T'·Dt'];
    with ``max_rows``, only the shards (in order) until the training rows reach it."""
    schema, files = FeatureSchema.from_parquet_dir(run / FEATURES_DIR)
    cleaner.check_schema(schema, f"{run}/{FEATURES_DIR}")
    parts: dict[str, dict[str, list]] = {s: {"scalar": [], "temporal": []} for s in ("train", "validation")}
    for f in files:
        if max_rows is not None and sum(len(x) for x in parts["train"]["scalar"]) >= max_rows:
            break
        batch = cleaner.schema.batch_from_arrow(pq.read_table(f), str(f))
        batch = batch.select(batch.status == 0)
        clean = cleaner.transform(batch)
        val = cleaner.split.is_validation(batch.operator_index)
        for name, rows in (("train", ~val), ("validation", val)):
            parts[name]["scalar"].append(clean.x[rows])
            t = clean.temporal[rows]  # [n, T', Dt']; n may be 0 (a shard without validation rows)
            parts[name]["temporal"].append(t.reshape(len(t), t.shape[1] * t.shape[2]))
    return {s: {k: np.concatenate(v).astype(np.float64) for k, v in d.items()} for s, d in parts.items()}


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Pooled validation R² exactly as the tokenizer's metrics compute it."""
    acc = R2Accumulator(y.shape[1])
    acc.update(torch.from_numpy(y), torch.from_numpy(yhat))
    return acc.r2()


def fit_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], components [k, D]) of the training rows, by variance."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k]


def kmeans(x: np.ndarray, k: int, seed: int) -> KMeans:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct points than codes (discrete features)
        return KMeans(n_clusters=min(k, len(x)), n_init=1, random_state=seed).fit(x)


def pca_pq(train: np.ndarray, val: np.ndarray, budgets: list[int], codes: int = 256, seed: int = 0) -> list[dict]:
    """PCA + PQ validation R² at each token budget: ``[{budget, tokens, components, r2}]`` (tokens are
    capped by the components the data have)."""
    dims = min(max(budgets) * SUBSPACE_DIM, train.shape[1], len(train))
    mean, comps = fit_pca(train, dims)
    ztr, zva = (train - mean) @ comps.T, (val - mean) @ comps.T
    n_sub = min(max(budgets), -(-dims // SUBSPACE_DIM))
    rec = []
    for j in range(n_sub):
        sub = slice(SUBSPACE_DIM * j, SUBSPACE_DIM * (j + 1))
        km = kmeans(ztr[:, sub], codes, seed + j)
        rec.append(km.cluster_centers_[km.predict(zva[:, sub])])
    out = []
    for b in budgets:
        m = min(b, n_sub)
        z = np.concatenate(rec[:m], axis=1)
        out.append({"budget": b, "tokens": m, "components": z.shape[1], "r2": r2(val, z @ comps[:z.shape[1]] + mean)})
    return out


def tokenizer_points(run: Path) -> dict:
    """Informative token positions per level prefix and validation R² per level of a run's tokenizer
    (``tokenizer/summary.json``; positions from the ``/tokens`` attrs ``level``, i.e. only emitted,
    informative ones; temporal and IC streams included: one decoder reads all tokens)."""
    tdir = run / TOKENIZER_DIR
    meta = json.loads((tdir / META_FILE).read_text())
    summary = json.loads((tdir / SUMMARY_FILE).read_text())
    with h5py.File(run / DATASET_FILE, "r") as f:
        if "tokens" not in f:
            raise DataError(f"{run}/{DATASET_FILE} has no /tokens: run 'spinlock tokenize {run}' first")
        attrs = f["tokens"].attrs
        levels = np.asarray(attrs["level"])
        bits = np.log2(np.asarray(attrs["codebook_size"], dtype=np.float64))
        streams = [s.decode() if isinstance(s, bytes) else str(s) for s in attrs["stream"]]
    if len(levels) != len(meta["layout"]["positions"]):
        raise DataError(f"{run}: /tokens has {len(levels)} columns, the tokenizer's layout"
                        f" {len(meta['layout']['positions'])}: the tokens are not this tokenizer's")
    other = np.array([s in ("temporal", "ic") for s in streams])
    r2v = summary["validation"]["r2"]
    return {
        "run": str(run),
        "model": meta["config"].get("model", {}),
        "streams": len(meta["layout"]["streams"]),
        "tokens": [int((levels <= lv).sum()) for lv in (1, 2, 3)],
        "category_tokens": [int(((levels <= lv) & ~other).sum()) for lv in (1, 2, 3)],
        "bits": [float(bits[levels <= lv].sum()) for lv in (1, 2, 3)],
        "scalar": r2v["all"],
        "temporal": r2v.get("temporal"),
        "ic": r2v.get("ic"),
        "validation_rows": summary["validation_rows"],
        "train_rows": summary["train_rows"],
    }


def run_frontier(run: Path, codes: int = 256, seed: int = 0, max_rows: int = 20_000) -> dict:
    """A tokenized run's tokenizer points and PCA + PQ at the same token counts (cleaned scalar
    features): ``{"tokenizer": tokenizer_points(run), "pq": pca_pq(...)}`` (the report's frontier plot).

    PCA + PQ is fitted on the training rows of the first shards up to ``max_rows`` and scored on their
    validation rows (all of them for runs of up to ~``max_rows`` operators), so a large run's report
    neither holds all its features in memory nor fits k-means on millions of rows.

    The result is kept in ``tokenizer/frontier.json`` under a key of the tokenizer's files and the
    arguments, so only the first report after a fit pays the k-means (~5 s on the quickstart, ~20 s at
    20 000 rows) and a refitted tokenizer is measured again."""
    tdir = Path(run) / TOKENIZER_DIR
    for name in (CLEANING_FILE, SUMMARY_FILE, META_FILE):
        if not (tdir / name).is_file():
            raise DataError(f"no {tdir / name}")
    blob = b"".join((tdir / n).read_bytes() for n in (META_FILE, SUMMARY_FILE))
    key = hashlib.sha256(blob + json.dumps([codes, seed, max_rows]).encode()).hexdigest()[:16]
    cache = tdir / FRONTIER_FILE
    if cache.is_file():
        try:
            kept = json.loads(cache.read_text())
            if kept.get("key") == key:
                return kept["frontier"]
        except (json.JSONDecodeError, AttributeError):
            pass  # unreadable: measured again and replaced
    points = tokenizer_points(Path(run))
    data = load_split(Path(run), FeatureCleaner.load(tdir / CLEANING_FILE), max_rows)
    train, val = data["train"]["scalar"], data["validation"]["scalar"]
    if len(val) < 2 or len(train) < 2:
        raise DataError(f"{run}: {len(train)} training / {len(val)} validation rows, too few for a frontier")
    result = {"tokenizer": points, "pq": pca_pq(train, val, sorted(set(points["tokens"])), codes, seed)}
    cache.write_text(json.dumps({"key": key, "frontier": result}))
    return result

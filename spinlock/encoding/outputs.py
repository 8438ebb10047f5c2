"""Write tokens and the learned INITIAL embedding into ``dataset.h5`` and ``tokens.parquet``.

``dataset.h5`` (opened in append mode only here; existing datasets are replaced):

* ``/tokens`` [N, positions] int32, one column per informative codebook (:mod:`spinlock.encoding.layout`),
  attrs ``names`` (``<stream>.l<level>``), ``stream``, ``level`` (1 coarse .. 3 fine) and
  ``codebook_size`` (K >= 2), one entry per column; row i belongs to ``/operators/index[i]``.
* ``/features/initial_learned`` [N, 28] float32, attr ``names`` (``learned_00`` ... ``learned_27``).

``tokens.parquet``: ``operator_index`` then one int32 column ``<stream>.l<level>`` per position, sorted by
operator index, schema metadata ``spinlock`` = ``{"positions": [{stream, level, codebook_size}]}``;
written to a temporary file and renamed (never half-written).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import IC_EMBEDDING_DIM
from spinlock.errors import DataError
from spinlock.storage import dims
from spinlock.storage.durable import durable_replace
from spinlock.storage.layout import DATASET_FILE, TOKENS_FILE

LEARNED_NAMES = [f"learned_{i:02d}" for i in range(IC_EMBEDDING_DIM)]


def align_rows(h5_index: np.ndarray, operator_index: np.ndarray, source: str) -> np.ndarray:
    """Permutation p with ``operator_index[p] == h5_index`` (every stored operator exactly once)."""
    order = np.argsort(operator_index, kind="stable")
    sorted_idx = operator_index[order]
    if len(np.unique(sorted_idx)) != len(sorted_idx):
        raise DataError(f"{source}: duplicate operator indices among the encoded rows")
    if len(sorted_idx) == 0:
        raise DataError(f"{source}: no encoded rows for the {len(h5_index)} stored operators")
    pos = np.clip(np.searchsorted(sorted_idx, h5_index), 0, len(sorted_idx) - 1)
    missing = sorted_idx[pos] != h5_index
    if np.any(missing) or len(sorted_idx) != len(h5_index):
        raise DataError(f"{source}: feature tables cover {len(sorted_idx)} operators but /operators/index"
                        f" lists {len(h5_index)}; first unmatched: {h5_index[missing][:8].tolist()}")
    return order[pos]


def _replace(f: h5py.File, name: str, data: np.ndarray) -> h5py.Dataset:
    """A new dataset ``name``; the old one and the scale of its last axis (used by it alone) are removed."""
    if name in f:
        dims.detach(f, name)
        del f[name]
    width = dims.scale_path(dims.DIMS[name][-1])
    if width in f:
        del f[width]
    return f.create_dataset(name, data=data)


def write_tokens(out_dir: str | Path, operator_index: np.ndarray, tokens: np.ndarray, layout: TokenLayout,
                 embedding: np.ndarray | None) -> None:
    """Store ``tokens`` [N, positions] (and ``embedding`` [N, 28]) for ``operator_index`` [N] under ``out_dir``."""
    out = Path(out_dir)
    layout.check(tokens, "tokens to write")
    h5_path = out / DATASET_FILE
    with h5py.File(h5_path, "a") as f:
        if "operators/index" not in f:
            raise DataError(f"{h5_path}: missing /operators/index")
        perm = align_rows(f["operators/index"][:], np.asarray(operator_index, np.int64), str(h5_path))
        ds = _replace(f, "tokens", tokens[perm].astype(np.int32))
        layout.write_attrs(ds.attrs)
        dims.attach(f, "tokens", {"token": np.asarray(layout.names, dtype=object)})
        if embedding is not None:
            emb = _replace(f, "features/initial_learned", embedding[perm].astype(np.float32))
            emb.attrs["names"] = LEARNED_NAMES
            dims.attach(f, "features/initial_learned")
    order = np.argsort(operator_index, kind="stable")
    cols = {"operator_index": pa.array(np.asarray(operator_index, np.int64)[order])}
    for j, name in enumerate(layout.names):
        cols[name] = pa.array(tokens[order, j].astype(np.int32))
    meta = {"positions": [p.to_json() for p in layout.positions]}
    table = pa.table(cols).replace_schema_metadata({b"spinlock": json.dumps(meta).encode()})
    tmp = out / f"{TOKENS_FILE}.tmp"
    pq.write_table(table, tmp)
    durable_replace(tmp, out / TOKENS_FILE)

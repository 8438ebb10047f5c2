"""Write tokens and the learned INITIAL embedding into ``dataset.h5`` and ``tokens.parquet``.

``dataset.h5`` (opened in append mode only here; existing datasets are replaced):

* ``/tokens`` [N, positions] int32, one column per informative codebook (:mod:`spinlock.encoding.layout`),
  attrs ``names`` (``<stream>.l<level>``), ``stream``, ``level`` (1 coarse .. 3 fine) and
  ``codebook_size`` (K >= 2), one entry per column; row i belongs to ``/operators/index[i]``.
* ``/features/initial_learned`` [N, 28] float32, attr ``names`` (``learned_00`` ... ``learned_27``).

``tokens.parquet``: ``operator_index`` then one int32 column ``<stream>.l<level>`` per position, sorted by
operator index, schema metadata ``spinlock`` = ``{"positions": [{stream, level, codebook_size}]}``, row groups
of :data:`WRITE_BLOCK_ROWS` rows; written to a temporary file and renamed (never half-written).

:class:`TokenWriter` takes the encoded blocks as they arrive, so the driver never holds every operator's
tokens: each block's rows go to a scratch file (next to ``dataset.h5``, in ``dataset.h5`` row order) along
with the code counts and constant-position flags the layout's trim and the token health need; at the end
the scratch rows are copied into ``dataset.h5`` and ``tokens.parquet`` block by block.
:func:`write_tokens` is the same writer fed one block.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
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
from spinlock.storage.layout import DATASET_FILE, TOKENIZER_DIGEST_ATTR, TOKENS_FILE
from spinlock.storage.rows import read_table

LEARNED_NAMES = [f"learned_{i:02d}" for i in range(IC_EMBEDDING_DIM)]
WRITE_BLOCK_ROWS = 65_536
"""Rows copied from the scratch file per HDF5 write and per ``tokens.parquet`` row group."""


def _replace(f: h5py.File, name: str, shape: tuple[int, int], dtype: type) -> h5py.Dataset:
    """A new empty dataset ``name``; the old one and the scale of its last axis (used by it alone) are removed."""
    if name in f:
        dims.detach(f, name)
        del f[name]
    width = dims.scale_path(dims.DIMS[name][-1])
    if width in f:
        del f[width]
    return f.create_dataset(name, shape=shape, dtype=dtype)


def write_tokens(out_dir: str | Path, operator_index: np.ndarray, tokens: np.ndarray, layout: TokenLayout,
                 embedding: np.ndarray | None, tokenizer_digest: str | None = None) -> None:
    """Store ``tokens`` [N, positions] (and ``embedding`` [N, 28]) for ``operator_index`` [N] under ``out_dir``."""
    layout.check(tokens, "tokens to write")
    with TokenWriter(out_dir, layout) as writer:
        writer.add(np.asarray(operator_index, np.int64), tokens, embedding)
        writer.write(layout, np.arange(len(layout.positions)), tokenizer_digest)


class TokenWriter:
    """Encoded blocks → ``dataset.h5:/tokens``, ``/features/initial_learned`` and ``tokens.parquet``.

    ``layout`` is the layout of the tokens :meth:`add` receives. Use as a context manager (the scratch file
    is removed on exit). While adding it counts, over the converged operators (``/status == 0``), each
    position's codes (:meth:`health`) and, over those that are also not ``validation`` (a function of the
    operator indices; none when ``None``), whether a position holds one code (:meth:`trim`).
    Memory: ``/operators/index``, ``/status`` and a seen-flag per operator (17 bytes), one block, the counts.
    """

    def __init__(self, out_dir: str | Path, layout: TokenLayout,
                 validation: Callable[[np.ndarray], np.ndarray] | None = None):
        self.out = Path(out_dir)
        self.h5_path = self.out / DATASET_FILE
        self.layout = layout
        self.validation = validation
        with h5py.File(self.h5_path, "r") as f:
            if "operators/index" not in f:
                raise DataError(f"{self.h5_path}: missing /operators/index")
            self.h5_index = np.asarray(read_table(f["operators/index"]), np.int64)  # shard by shard
            status = read_table(f["status"]) if "status" in f else np.zeros(len(self.h5_index), np.int8)
        self.converged = status == 0
        self.by_index = np.argsort(self.h5_index, kind="stable")
        self.seen = np.zeros(len(self.h5_index), bool)
        n_pos = len(layout.positions)
        self.counts = [np.zeros(p.codebook_size, np.int64) for p in layout.positions]
        self.fit_rows = 0
        self.first = np.zeros(n_pos, np.int64)
        self.single = np.ones(n_pos, bool)
        self.embedding: bool | None = None
        self.record = np.dtype([("tokens", np.int32, (n_pos,)), ("embedding", np.float32, (IC_EMBEDDING_DIM,))])
        self.scratch = tempfile.TemporaryFile(dir=self.out, prefix=".tokens-")

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.scratch.close()

    def add(self, operator_index: np.ndarray, tokens: np.ndarray, embedding: np.ndarray | None) -> None:
        """One encoded block: ``operator_index`` [B], ``tokens`` [B, positions], ``embedding`` [B, 28] or None."""
        if not len(operator_index):
            return
        self.layout.check(tokens, "tokens to write")
        if self.embedding is None:
            self.embedding = embedding is not None
        elif self.embedding != (embedding is not None):
            raise DataError("encoded blocks disagree on whether they carry the learned IC embedding")
        rows = self._rows(operator_index)
        if self.seen[rows].any() or len(np.unique(rows)) != len(rows):
            raise DataError(f"{self.h5_path}: duplicate operator indices among the encoded rows")
        self.seen[rows] = True
        conv = self.converged[rows]
        for j, c in enumerate(self.counts):
            c += np.bincount(tokens[conv, j], minlength=len(c))
        fit = conv if self.validation is None else conv & ~np.asarray(self.validation(operator_index), bool)
        if fit.any():
            fit_tokens = tokens[fit]
            if self.fit_rows == 0:
                self.first = fit_tokens[0].astype(np.int64)
            self.single &= (fit_tokens == self.first).all(axis=0)
            self.fit_rows += int(fit.sum())
        rec = np.zeros(len(rows), self.record)
        rec["tokens"] = tokens
        if embedding is not None:
            rec["embedding"] = embedding
        order = np.argsort(rows, kind="stable")
        rows, rec = rows[order], rec[order]
        for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1):
            self.scratch.seek(int(rows[run[0]]) * self.record.itemsize)
            self.scratch.write(rec[run].tobytes())

    def _rows(self, operator_index: np.ndarray) -> np.ndarray:
        """``dataset.h5`` rows of ``operator_index`` (an index not stored is an error)."""
        idx = np.asarray(operator_index, np.int64)
        ordered = self.h5_index[self.by_index]
        pos = np.clip(np.searchsorted(ordered, idx), 0, max(len(ordered) - 1, 0))
        unknown = ordered[pos] != idx if len(ordered) else np.ones(len(idx), bool)
        if unknown.any():
            raise DataError(f"{self.h5_path}: encoded operators {idx[unknown][:8].tolist()} are not in"
                            " /operators/index")
        return self.by_index[pos]

    def trim(self) -> tuple[TokenLayout, np.ndarray]:
        """:meth:`TokenLayout.trim` over the converged training operators added so far."""
        if self.fit_rows == 0:
            raise ValueError(f"trim needs [n >= 1, {len(self.layout.positions)}] tokens, got no training rows")
        return self.layout.trim_single(self.single, self.first, self.fit_rows)

    def health(self, layout: TokenLayout, keep: np.ndarray) -> dict:
        """:func:`spinlock.encoding.metrics.position_health` of the converged operators' ``keep`` columns."""
        from spinlock.encoding.metrics import position_health

        return position_health([self.counts[j] for j in keep], int(self.converged[self.seen].sum()), layout)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Scratch records of sorted ``rows`` (contiguous runs read at once)."""
        out = np.empty(len(rows), self.record)
        for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1):
            if run.size:
                self.scratch.seek(int(rows[run[0]]) * self.record.itemsize)
                out[run] = np.frombuffer(self.scratch.read(run.size * self.record.itemsize), self.record)
        return out

    def write(self, layout: TokenLayout, keep: np.ndarray, tokenizer_digest: str | None = None) -> None:
        """Write the ``keep`` columns (of the added layout) as ``layout``'s tokens; every stored operator
        must have been added. ``tokenizer_digest`` (``Tokenizer.digest``) is stored with them, so a reader
        can refuse to decode them with another tokenizer."""
        n = len(self.h5_index)
        if not self.seen.any():
            raise DataError(f"{self.h5_path}: no encoded rows for the {n} stored operators")
        if not self.seen.all():
            raise DataError(f"{self.h5_path}: feature tables cover {int(self.seen.sum())} operators but"
                            f" /operators/index lists {n}; first unmatched: {self.h5_index[~self.seen][:8].tolist()}")
        keep = np.asarray(keep, np.int64)
        with h5py.File(self.h5_path, "a") as f:
            ds = _replace(f, "tokens", (n, len(keep)), np.int32)
            emb = _replace(f, "features/initial_learned", (n, IC_EMBEDDING_DIM), np.float32) if self.embedding \
                else None
            for a in range(0, n, WRITE_BLOCK_ROWS):
                rec = self._read(np.arange(a, min(a + WRITE_BLOCK_ROWS, n)))
                ds[a:a + len(rec)] = rec["tokens"][:, keep]
                if emb is not None:
                    emb[a:a + len(rec)] = rec["embedding"]
            layout.write_attrs(ds.attrs)
            if tokenizer_digest is not None:
                ds.attrs[TOKENIZER_DIGEST_ATTR] = tokenizer_digest
            dims.attach(f, "tokens", {"token": np.asarray(layout.names, dtype=object)})
            if emb is not None:
                emb.attrs["names"] = LEARNED_NAMES
                dims.attach(f, "features/initial_learned")
        meta = {"positions": [p.to_json() for p in layout.positions], TOKENIZER_DIGEST_ATTR: tokenizer_digest}
        schema = pa.schema([("operator_index", pa.int64())] + [(name, pa.int32()) for name in layout.names],
                           metadata={b"spinlock": json.dumps(meta).encode()})
        order = self.by_index  # rows in operator-index order
        tmp = self.out / f"{TOKENS_FILE}.tmp"
        with pq.ParquetWriter(tmp, schema) as writer:
            for a in range(0, n, WRITE_BLOCK_ROWS):
                rows = order[a:a + WRITE_BLOCK_ROWS]
                sort = np.argsort(rows, kind="stable")
                rec = np.empty(len(rows), self.record)
                rec[sort] = self._read(rows[sort])
                cols = [pa.array(self.h5_index[rows])] + [pa.array(rec["tokens"][:, j]) for j in keep]
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
        durable_replace(tmp, self.out / TOKENS_FILE)

"""TokenWriter: encoded blocks written as they arrive give the files a one-shot write gives, and the
streamed trim and token health equal those of the whole token matrix."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from spinlock.encoding import outputs
from spinlock.encoding.layout import Position, TokenLayout
from spinlock.encoding.metrics import token_health
from spinlock.encoding.outputs import TokenWriter, write_tokens
from spinlock.errors import DataError

LAYOUT = TokenLayout(("a", "b"), (Position("a", 1, 5), Position("a", 2, 3), Position("b", 1, 8), Position("b", 2, 2)))


def _dataset(path, index: np.ndarray, status: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("operators/index", data=index)
        f.create_dataset("status", data=status)


def _encoded(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = rng.permutation(n).astype(np.int64) + 100
    tokens = np.column_stack([rng.integers(0, p.codebook_size, n) for p in LAYOUT.positions]).astype(np.int32)
    tokens[:, 1] = 2  # one code for every operator: trimmed
    return index, tokens, rng.normal(size=(n, 28)).astype(np.float32)


def _files(out) -> tuple[np.ndarray, np.ndarray, dict, object]:
    with h5py.File(out / "dataset.h5", "r") as f:
        attrs = {k: v for k, v in f["tokens"].attrs.items() if k != "DIMENSION_LIST"}  # references: per file
        return f["tokens"][()], f["features/initial_learned"][()], attrs, pq.read_table(out / "tokens.parquet")


def test_blocks_give_the_one_shot_files_and_trim_and_health(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "WRITE_BLOCK_ROWS", 7)  # several HDF5 writes and Parquet row groups
    rng = np.random.default_rng(0)
    n = 50
    h5_index = rng.permutation(n).astype(np.int64) + 100  # the stored order is not sorted
    status = (rng.random(n) < 0.2).astype(np.int8)  # some diverged operators
    index, tokens, emb = _encoded(n, rng)
    keep = np.array([0, 2, 3])
    layout = TokenLayout(LAYOUT.streams, tuple(LAYOUT.positions[j] for j in keep), ((LAYOUT.positions[1], 2),))
    for d in ("one", "blocks"):
        (tmp_path / d).mkdir()
        _dataset(tmp_path / d / "dataset.h5", h5_index, status)
    write_tokens(tmp_path / "one", index, tokens[:, keep], layout, emb)

    def validation(idx: np.ndarray) -> np.ndarray:
        return idx % 3 == 0

    with TokenWriter(tmp_path / "blocks", LAYOUT, validation=validation) as w:
        for part in np.array_split(rng.permutation(n), 6):  # blocks of 8-9 rows, any order
            w.add(index[part], tokens[part], emb[part])
        trimmed, kept = w.trim()
        w.write(trimmed, kept)
        health = w.health(trimmed, kept)
    assert trimmed == layout and kept.tolist() == keep.tolist()
    one, blocks = _files(tmp_path / "one"), _files(tmp_path / "blocks")
    assert np.array_equal(one[0], blocks[0]) and np.array_equal(one[1], blocks[1])
    assert one[2].keys() == blocks[2].keys() and all(np.array_equal(one[2][k], blocks[2][k]) for k in one[2])
    assert one[3].equals(blocks[3]) and one[3].schema.metadata == blocks[3].schema.metadata
    assert blocks[3].num_rows == n and pq.ParquetFile(tmp_path / "blocks" / "tokens.parquet").num_row_groups == 8
    # rows are aligned to /operators/index, Parquet rows sorted by operator index
    row_of = {int(g): i for i, g in enumerate(index)}
    assert np.array_equal(blocks[0], tokens[[row_of[int(g)] for g in h5_index]][:, keep])
    assert np.array_equal(blocks[1], emb[[row_of[int(g)] for g in h5_index]])
    assert blocks[3].column("operator_index").to_numpy().tolist() == sorted(index.tolist())
    # the streamed trim and health equal those of the whole matrix
    conv = np.array([status[h5_index.tolist().index(int(g))] == 0 for g in index])
    fit = conv & ~validation(index)
    assert LAYOUT.trim(tokens[fit])[0] == trimmed
    whole = token_health(tokens[conv][:, keep], trimmed)
    assert json.dumps(health, sort_keys=True) == json.dumps(whole, sort_keys=True)  # NaN levels compare equal
    assert health["rows"] == int(conv.sum()) > 0


def test_missing_and_duplicate_operators_are_errors(tmp_path):
    rng = np.random.default_rng(1)
    index, tokens, emb = _encoded(10, rng)
    _dataset(tmp_path / "dataset.h5", np.sort(index), np.zeros(10, np.int8))
    with TokenWriter(tmp_path, LAYOUT) as w:
        w.add(index[:6], tokens[:6], emb[:6])
        with pytest.raises(DataError, match="duplicate"):
            w.add(index[5:7], tokens[5:7], emb[5:7])
        with pytest.raises(DataError, match="not in /operators/index"):
            w.add(np.array([7]), tokens[:1], emb[:1])
        with pytest.raises(DataError, match="cover 6 operators"):
            w.write(LAYOUT, np.arange(4))
    assert not any(p.name.startswith(".tokens-") for p in tmp_path.iterdir())  # the scratch file is gone

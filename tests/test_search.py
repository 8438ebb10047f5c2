"""Nearest-behaviour search: the projection's mathematics, the index against brute force and on planted
clusters (IVF), the distance's values through a saved tokenizer (decode = the model's reconstruction,
depth = token prefix), the index cache, and the ``spinlock neighbors`` verb."""

from __future__ import annotations

import re
import shutil

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_features import untrained_tokenizer, write_synthetic_run

import spinlock.encoding.search as S
from spinlock.cli.main import main
from spinlock.encoding.icfields import ICReader
from spinlock.encoding.outputs import write_tokens
from spinlock.encoding.search import (
    Projection,
    SearchIndex,
    VectorIndex,
    behaviour_vectors,
    encode_operators,
    nearest,
)
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.errors import DataError


def test_projection_keeps_distances_in_the_data_subspace():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(10, 3)))[0]  # orthonormal columns: a 3-D subspace of R^10
    scales = np.array([5.0, 2.0, 1.0])
    x = 7.0 + (rng.normal(size=(400, 3)) * scales) @ basis.T
    p = Projection.fit(x, max_components=3)
    assert p.components.shape == (3, 10) and p.explained == pytest.approx(1.0)
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(3), atol=1e-12)
    v = p(x)
    d_full = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(v[:, None] - v[None], axis=-1), d_full, rtol=1e-5, atol=1e-4)
    assert len(Projection.fit(x).components) == 3  # 2 axes keep ~97 % < KEEP_VARIANCE: all 3 are needed
    assert len(Projection.fit(x, keep=0.9).components) == 2  # 1 axis keeps ~83 %
    two = Projection.fit(x, max_components=2)  # drops the axis of variance ~1 out of ~25 + 4 + 1
    s2 = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    assert two.explained == pytest.approx(s2[:2].sum() / s2.sum(), rel=1e-9) and 0.93 < two.explained < 0.99
    assert all(c[np.abs(c).argmax()] > 0 for c in two.components)  # the sign convention
    with pytest.raises(DataError, match=r"needs \[n >= 1, D'\]"):
        Projection.fit(np.zeros((0, 4)))


def test_flat_index_equals_brute_force_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 12)).astype(np.float32)
    ix = VectorIndex.build(x)
    assert ix.exact and ix.n == 500 and ix.dim == 12 and ix.nbytes == 500 * 12 * 4 and ix.recall is None
    for q in rng.integers(0, 500, 20):
        ref = nearest(np.linalg.norm(x.astype(np.float64) - x[q], axis=1), 7, [q, (q + 1) % 500])
        nb = ix.search(x[q], 7, [q, (q + 1) % 500])
        assert nb.rows.tolist() == ref.rows.tolist()
        np.testing.assert_allclose(nb.distances, ref.distances, rtol=1e-4)
    fresh = rng.normal(size=12)
    assert ix.search(fresh, 3).rows.tolist() == nearest(np.linalg.norm(x - fresh, axis=1), 3).rows.tolist()
    assert ix.search(x[0], 1).distances[0] == 0.0  # itself
    ix.save(tmp_path / "i.faiss")
    back = VectorIndex.load(tmp_path / "i.faiss", None)
    assert back.search(x[5], 4, [5]).rows.tolist() == ix.search(x[5], 4, [5]).rows.tolist()
    assert len(ix.search(x[0], 600).rows) == 500
    with pytest.raises(DataError, match="query vector has 3 components, the index 12"):
        ix.search(x[0, :3])
    with pytest.raises(DataError, match="k must be >= 1"):
        ix.search(x[0], 0)


def test_ivf_index_recall_on_planted_clusters():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(30, 16)) * 20
    labels = np.repeat(np.arange(30), 100)
    x = (centers[labels] + rng.normal(size=(3000, 16))).astype(np.float32)
    ix = VectorIndex.build(x, exact_max_rows=1000)
    assert not ix.exact and ix.index.nlist == round(4 * np.sqrt(3000))
    assert ix.recall >= 0.95 and 1 <= ix.index.nprobe <= ix.index.nlist
    assert "IVF index of 3000 vectors, 219 lists" in ix.describe()
    queries = (centers[labels[::37]] + rng.normal(size=(len(labels[::37]), 16))).astype(np.float32)
    same, hits = [], []
    for q, lab in zip(queries, labels[::37], strict=True):
        nb = ix.search(q, 10)
        same.append(np.mean(labels[nb.rows] == lab))
        exact = nearest(np.linalg.norm(x - q, axis=1), 10)
        hits.append(len(set(nb.rows.tolist()) & set(exact.rows.tolist())) / 10)
    assert np.mean(same) == 1.0  # every neighbour found is of the query's planted cluster
    assert np.mean(hits) >= 0.9


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """A synthetic run with a saved (k-means initialised, untrained) tokenizer and its tokens written."""
    run = write_synthetic_run(tmp_path_factory.mktemp("search"), n_operators=120, n_shards=2)
    tok, schema, files, _, _ = untrained_tokenizer(run.out)
    tok.save(run.out / "tokenizer")
    full = schema.batch_from_arrow(pa.concat_tables([pq.read_table(f) for f in files]))
    all_ic = ICReader(run.out / "dataset.h5").read(full.operator_index)
    tokens = tok.encode(full, all_ic).tokens
    write_tokens(run.out, full.operator_index, tokens, tok.layout, None, tok.digest())
    return run, Tokenizer.load(run.out / "tokenizer"), full, all_ic, tokens


def test_decode_is_the_models_reconstruction_and_depth_is_a_token_prefix(tokenized):
    run, tok, full, ic, tokens = tokenized
    inputs = {k: torch.from_numpy(v) for k, v in tok.inputs(full, ic).items()}
    with torch.no_grad():
        rx = tok.model(inputs["x"], inputs["temporal"], inputs["ic"]).x.numpy()  # eval mode: all levels
    np.testing.assert_allclose(tok.decode(tokens), rx, rtol=1e-4, atol=1e-5)
    levels = np.array([p.level for p in tok.layout.positions])
    finer = tokens.copy()
    finer[:, levels > 1] = tokens[::-1][:, levels > 1]  # other operators' finer codes
    np.testing.assert_allclose(tok.decode(finer, 1), tok.decode(tokens, 1), atol=1e-6)
    assert not np.allclose(tok.decode(finer, 2), tok.decode(tokens, 2))
    with pytest.raises(DataError, match=r"tokens to decode: tokens have shape \(120, 3\)"):
        tok.decode(tokens[:, :3])


def test_search_distance_values(tokenized, monkeypatch):
    _, tok, _, _, tokens = tokenized
    monkeypatch.setattr(S, "KEEP_VARIANCE", 1.0)  # every axis with variance: the distance is the full one
    for levels in (1, 2, 3):
        ix = SearchIndex.build(tok, tokens, levels)
        recon = tok.decode(tokens, levels).astype(np.float64)
        assert recon.shape[1] <= 64 and ix.projection.explained == pytest.approx(1.0)  # m >= D': lossless
        for q in (0, 17, 119):
            ref = nearest(np.linalg.norm(recon - recon[q], axis=1), 6, [q])
            nb = ix.query(tokens[q], 6, [q])
            assert nb.rows.tolist() == ref.rows.tolist()
            np.testing.assert_allclose(nb.distances, ref.distances, rtol=1e-3, atol=1e-4)
    small = behaviour_vectors(tok, tokens, 3, max_components=2)[1]
    assert small.components.shape[0] == 2 and small.explained < 1
    with pytest.raises(DataError, match="levels must be in 1..3, got 4"):
        SearchIndex.build(tok, tokens, 4)
    with pytest.raises(DataError, match="query tokens have shape"):
        SearchIndex.build(tok, tokens).query(tokens[0, :2])


def test_open_caches_and_rebuilds_on_new_tokens(tokenized, tmp_path):
    run, tok, _, _, tokens = tokenized
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    first = SearchIndex.open(out, tok, 2)
    assert first.seconds > 0 and (out / "search" / "levels-2.faiss").is_file()
    again = SearchIndex.open(out, tok, 2)
    assert again.seconds == 0
    assert again.query(tokens[3], 5, [3]).rows.tolist() == first.query(tokens[3], 5, [3]).rows.tolist()
    changed = tokens.copy()
    changed[3] = changed[4]  # operator 3 now has operator 4's tokens: distance 0
    with h5py.File(out / "dataset.h5", "a") as f:
        f["tokens"][3] = changed[3]
    rebuilt = SearchIndex.open(out, tok, 2)
    assert rebuilt.seconds > 0
    nb = rebuilt.query(changed[4], 1, [4])
    assert nb.rows.tolist() == [3] and nb.distances[0] < 1e-3
    other, *_ = untrained_tokenizer(run.out, first_stream=(3, 8, 8))
    with pytest.raises(DataError, match=r"layout \(\d+ positions\) is not the one of"):
        SearchIndex.open(out, other, 2)
    retrained = Tokenizer.load(run.out / "tokenizer")  # same layout, other weights: the codes mean other things
    with torch.no_grad():
        next(retrained.model.parameters()).add_(0.01)
    with h5py.File(out / "dataset.h5", "r") as f:
        assert f["tokens"].attrs["tokenizer_digest"] == tok.digest() != retrained.digest()
    with pytest.raises(DataError, match="written by another tokenizer"):
        SearchIndex.open(out, retrained, 2)


def _neighbors(capsys, *argv) -> tuple[int, list[tuple[int, float]], str]:
    rc = main(["neighbors", *map(str, argv)])
    out = capsys.readouterr()
    rows = [(int(m[1]), float(m[2])) for m in re.finditer(r"^\s+\d+\s+(\d+)\s+([\d.]+)\s", out.out, re.M)]
    return rc, rows, out.out + out.err


def test_cli_neighbors(tokenized, tmp_path, capsys, monkeypatch):
    run, tok, full, _, tokens = tokenized
    monkeypatch.setattr(S, "KEEP_VARIANCE", 1.0)  # distances comparable with the full reconstruction's
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    row = 7
    op = int(full.operator_index[row])
    recon = tok.decode(tokens).astype(np.float64)
    ref = nearest(np.linalg.norm(recon - recon[row], axis=1), 4, [row])
    rc, rows, text = _neighbors(capsys, out, "--operator", op, "-k", 4, "--out", tmp_path / "x.png")
    assert rc == 0 and [r for r, _ in rows] == full.operator_index[ref.rows].tolist()
    np.testing.assert_allclose([d for _, d in rows], ref.distances, atol=2e-3)
    assert "levels 1..3" in text and "exact flat index of 120 vectors" in text and "built in" in text
    assert "no picture" in text and not (tmp_path / "x.png").exists()

    # the query from another run (here the same one), encoded with the tokenizer: itself at distance 0
    rc, rows, text = _neighbors(capsys, out, "--operator", op, "-k", 5, "--dataset", run.out,
                                "--tokenizer", run.out / "tokenizer")
    assert rc == 0 and "encoded with" in text and "loaded" in text
    assert rows[0] == (op, 0.0) and [r for r, _ in rows[1:]] == full.operator_index[ref.rows].tolist()

    with h5py.File(out / "dataset.h5", "a") as f:  # trajectories for the picture: the IC, held 2 steps
        ics = f["ics/fields"][()]
        f.create_dataset("trajectories", data=np.repeat(ics[:, None, None], 2, axis=2)).attrs["stride"] = 1
    png = tmp_path / "nb.png"
    rc, _, text = _neighbors(capsys, out, "--operator", op, "-k", 4, "--levels", 1, "--out", png)
    assert rc == 0 and "levels 1..1" in text and f"wrote {png}" in text
    from PIL import Image

    assert Image.open(png).size[0] > 5 * ics.shape[-1]  # query + 4 neighbours side by side

    rc, _, text = _neighbors(capsys, out, "--operator", 99999)
    assert rc == 2 and "operator(s) [99999] not in" in text
    other, *_ = untrained_tokenizer(run.out, first_stream=(3, 8, 8))
    other.save(tmp_path / "other")
    rc, _, text = _neighbors(capsys, out, "--operator", op, "--tokenizer", tmp_path / "other")
    assert rc == 2 and "is not the one of" in text
    with h5py.File(out / "dataset.h5", "a") as f:
        del f["tokens"]
    rc, _, text = _neighbors(capsys, out, "--operator", op)
    assert rc == 2 and "no /tokens" in text


def test_new_operator_path_encodes_like_the_tokenizer(tokenized):
    run, tok, full, _, tokens = tokenized
    got = encode_operators(tok, run.out, full.operator_index[[7, 100, 3]])  # any order, rows from both shards
    assert np.array_equal(got, tokens[[7, 100, 3]])
    with pytest.raises(DataError, match=r"operator\(s\) \[100000\] not in"):
        encode_operators(tok, run.out, [100000])

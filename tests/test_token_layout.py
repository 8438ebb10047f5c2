"""Token layout: only informative codebooks are token positions; the layout travels with the tokens
(dataset.h5 attrs, tokens.parquet, tokenizer.json) and every reader and the checker follow it."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_features import untrained_tokenizer, write_synthetic_run

from spinlock.encoding.layout import Position, TokenLayout, read_parquet_layout
from spinlock.encoding.metrics import codebook_health, token_health
from spinlock.encoding.model import ModelSpec
from spinlock.encoding.outputs import write_tokens
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.errors import DataError
from spinlock.storage.checker import check_tokens
from spinlock.storage.layout import META_FILE
from spinlock.storage.reader import OperatorDataset
from spinlock.viz.rundata import RunData


def _spec(sizes: tuple[tuple[int, ...], ...]) -> ModelSpec:
    return ModelSpec(category_columns=((0, 1), (2,)), n_features=3, temporal_features=0, temporal_length=0,
                     ic_channels=0, ic_resolution=8, latent_dim=4, hidden_dim=8, codebook_sizes=(8, 8, 8),
                     encoder_names=("a", "b"), encoder_codebook_sizes=sizes)


def test_plan_leaves_one_code_levels_out():
    layout = TokenLayout.plan(_spec(((5, 1, 1), (8, 4, 2))))
    assert layout.names == ["a.l1", "b.l1", "b.l2", "b.l3"]
    assert [p.codebook_size for p in layout.positions] == [5, 8, 4, 2]
    assert layout.columns.tolist() == [0, 3, 4, 5]  # stream e, level l: column 3e + l - 1 of [E·3]
    assert [(p.name, c) for p, c in layout.dropped] == [("a.l2", 0), ("a.l3", 0)]
    assert TokenLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout


def test_trim_drops_positions_the_training_rows_hold_one_code_of():
    layout = TokenLayout.plan(_spec(((5, 1, 1), (8, 4, 2))))
    tokens = np.array([[0, 3, 2, 1], [4, 3, 0, 1], [2, 3, 1, 0]])
    trimmed, keep = layout.trim(tokens)
    assert keep.tolist() == [0, 2, 3] and trimmed.names == ["a.l1", "b.l2", "b.l3"]
    assert (trimmed.positions[0], 0) not in trimmed.dropped and (layout.positions[1], 3) in trimmed.dropped
    with pytest.raises(DataError, match="carries no information"):
        layout.trim(np.ones((4, 4), int))


def test_full_codes_put_the_dropped_levels_back():
    layout = TokenLayout.plan(_spec(((5, 1, 1), (8, 4, 2))))
    tokens = np.array([[0, 3, 2, 1], [4, 3, 0, 1], [2, 3, 1, 0]])
    trimmed, keep = layout.trim(tokens)  # b.l1 (always 3) is dropped too
    full = trimmed.full_codes(tokens[:, keep])
    assert full.shape == (3, 2, 3) and full.dtype == np.int64
    assert full[:, 0].tolist() == [[0, 0, 0], [4, 0, 0], [2, 0, 0]]  # a: l1 token, l2 and l3 one code 0
    assert full[:, 1].tolist() == [[3, 2, 1], [3, 0, 1], [3, 1, 0]]  # b: l1 its one code 3, l2 and l3 tokens
    with pytest.raises(DataError, match=r"tokens to decode: codes outside \[0, K\) in column\(s\) a.l1"):
        trimmed.full_codes(np.array([[5, 0, 0]]))


def _write_dataset(path, n: int) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("operators/index", data=np.arange(n, dtype=np.int64))


def test_layout_round_trips_through_dataset_attrs_and_parquet(tmp_path):
    layout, _ = TokenLayout.plan(_spec(((5, 1, 1), (8, 4, 2)))).trim(
        np.array([[0, 3, 2, 1], [4, 3, 0, 1], [2, 3, 1, 0]]))
    _write_dataset(tmp_path / "dataset.h5", 4)
    tokens = np.array([[1, 0, 1], [4, 3, 0], [0, 2, 1], [3, 1, 1]], np.int32)
    write_tokens(tmp_path, np.array([3, 2, 1, 0]), tokens, layout, None)
    with h5py.File(tmp_path / "dataset.h5", "r") as f:
        got = TokenLayout.from_attrs(f["tokens"].attrs)
        assert check_tokens(f["tokens"]) == []
        stored = f["tokens"][()]
    assert got.positions == layout.positions and got.names == ["a.l1", "b.l2", "b.l3"]
    assert np.array_equal(stored, tokens[::-1])  # aligned to /operators/index
    table = pq.read_table(tmp_path / "tokens.parquet")
    assert read_parquet_layout(table.schema).positions == layout.positions
    assert table.column_names == ["operator_index", "a.l1", "b.l2", "b.l3"]
    ds = OperatorDataset(tmp_path / "dataset.h5")
    assert ds.token_layout().positions == layout.positions and ds.names()["tokens"] == layout.names
    assert torch.equal(ds[0]["tokens"], torch.tensor([3, 1, 1], dtype=torch.int32))
    with pytest.raises(DataError, match="outside"):
        write_tokens(tmp_path, np.arange(4), np.array([[5, 0, 0]] * 4, np.int32), layout, None)


def _set(key, value):
    return lambda d: d.attrs.__setitem__(key, np.array(value, np.int32))


def _code(d):
    d[0, 1] = 9  # a code >= K = 4 of b.l2


@pytest.mark.parametrize("edit, message", [
    (_set("codebook_size", [5, 1, 2]), "never emitted"),
    (_set("level", [1, 2]), "different lengths"),
    (_set("level", [1, 2, 4]), "not in 1..3"),
    (lambda d: d.attrs.__delitem__("stream"), "no token layout"),
    (_code, "outside [0, K) in column(s) b.l2 (K=4)"),
])
def test_checker_validates_layout_attrs_against_the_tokens(tmp_path, edit, message):
    layout = TokenLayout(("a", "b"), (Position("a", 1, 5), Position("b", 2, 4), Position("b", 3, 2)))
    _write_dataset(tmp_path / "dataset.h5", 2)
    write_tokens(tmp_path, np.arange(2), np.array([[4, 3, 1], [0, 0, 0]], np.int32), layout, None)
    with h5py.File(tmp_path / "dataset.h5", "a") as f:
        assert check_tokens(f["tokens"]) == []
        edit(f["tokens"])
        problems = check_tokens(f["tokens"])
    assert len(problems) == 1 and message in problems[0], problems


def test_checker_refuses_a_width_the_layout_does_not_describe(tmp_path):
    layout = TokenLayout(("a",), (Position("a", 1, 5), Position("a", 2, 3)))
    _write_dataset(tmp_path / "dataset.h5", 2)
    with h5py.File(tmp_path / "dataset.h5", "a") as f:
        d = f.create_dataset("tokens", data=np.zeros((2, 3), np.int32))
        layout.write_attrs(d.attrs)
        assert "layout has 2 positions" in check_tokens(d)[0]
    with pytest.raises(DataError, match="3 columns, its layout 2"):
        OperatorDataset(tmp_path / "dataset.h5", fields=["tokens"])


def test_health_leaves_single_code_books_out():
    # encoder 0: K = 4 (2 codes used), K = 1, K = 4 (all used); encoder 1: K = 2 (both), K = 2 (one), K = 1
    counts = [[np.array([5, 5, 0, 0]), np.array([10]), np.array([4, 4, 1, 1])],
              [np.array([3, 7]), np.array([10, 0]), np.array([10])]]
    h = codebook_health(counts)
    assert h["codebook_usage"] == [0.75, 0.5, 1.0]  # the K = 1 books would read 1.0 and raise the means
    assert h["usage_min"] == [0.5, 0.5, 1.0]
    assert h["single_code_books"] == [0, 1, 1] and h["books"] == [2, 1, 1] and h["constant_books"] == [0, 1, 0]
    assert h["perplexity"][1] == pytest.approx(1.0) and h["perplexity_ratio"][1] == pytest.approx(0.5)
    assert h["usage_by_encoder"][0][1] is None and h["perplexity_ratio_by_encoder"][1][2] is None
    only_one = codebook_health([[np.array([3, 7]), np.array([10]), np.array([10])]])
    assert np.isnan(only_one["codebook_usage"][1]) and only_one["single_code_books"] == [0, 1, 1]

    layout = TokenLayout.plan(_spec(((4, 1, 1), (2, 2, 4))))
    tokens = np.array([[0, 1, 0, 0], [1, 1, 0, 3], [1, 0, 0, 2]])
    t = token_health(tokens, layout)
    assert t["codebook_usage"] == pytest.approx([(0.5 + 1.0) / 2, 0.5, 0.75]) and t["rows"] == 3
    assert t["single_code_books"] == [0, 1, 1] and t["dropped"] == ["a.l2", "a.l3"]
    assert t["constant_positions"] == ["b.l2"] and t["usage_by_position"]["b.l3"] == 0.75


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    """A Tokenizer (k-means initialised, untrained) whose first stream is planned [4, 1, 1]."""
    run = write_synthetic_run(tmp_path_factory.mktemp("layout"), n_operators=120, n_shards=1)
    tok, _, _, batch, ic = untrained_tokenizer(run.out, first_stream=(4, 1, 1))
    return tok, batch, ic


def test_tokenizer_emits_its_layout_and_a_saved_one_gives_the_same(small_tokenizer, tmp_path):
    tok, batch, ic = small_tokenizer
    full, _ = tok.model.encode(*[torch.from_numpy(v) if v is not None else None for v in
                                 (lambda d: (d["x"], d.get("temporal"), d.get("ic")))(tok.inputs(batch, ic))])
    out = tok.encode(batch, ic)
    n_streams = tok.spec.n_encoders
    assert out.tokens.shape == (len(batch), 3 * n_streams - 2)  # the [4, 1, 1] stream emits its coarse code only
    assert np.array_equal(out.tokens, full.flatten(1).numpy()[:, tok.layout.columns])
    assert (full[:, 0, 1:] == 0).all() and "c00.l2" not in tok.layout.names
    layout, keep = tok.layout.trim(out.tokens)
    tok.layout = layout
    tok.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / META_FILE).read_text())
    assert TokenLayout.from_json(meta["layout"]) == layout
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.layout == layout
    assert np.array_equal(loaded.encode(batch, ic).tokens, out.tokens[:, keep])
    meta["format"] = 4  # residual levels of one latent: its weights mean something else now
    (tmp_path / "tok" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="tokenizer format 4 .*reads 8.*spinlock tokenize"):
        Tokenizer.load(tmp_path / "tok")


def test_viz_reader_places_positions_by_stream_and_level(tmp_path):
    from synthetic_run import make_run

    syn = make_run(tmp_path / "run", n=6)
    with h5py.File(syn.out / "dataset.h5", "a") as f:
        old = f["tokens"][()]
        del f["tokens"]
        d = f.create_dataset("tokens", data=old[:, [0, 3, 4]])  # amplitude.l1, structure.l1, structure.l2
        TokenLayout(("amplitude", "structure"), (Position("amplitude", 1, 8), Position("structure", 1, 8),
                                                 Position("structure", 2, 8))).write_attrs(d.attrs)
    tok = RunData(syn.out).tokens()
    assert tok.categories == ["amplitude", "structure"] and tok.codes.shape == (6, 2, 3)
    assert np.array_equal(tok.codes[:, 1, :2], old[:, 3:5]) and (tok.codes[:, 0, 1:] == -1).all()

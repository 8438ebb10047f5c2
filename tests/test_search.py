"""Nearest-behaviour search: the prefix distance's axioms on planted codes, the index against a brute-force
scan, the ``spinlock neighbors`` verb on a synthetic run, and the new-operator path through a saved
tokenizer."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_features import untrained_tokenizer, write_synthetic_run
from synthetic_run import make_run

from spinlock.cli.main import main
from spinlock.encoding.icfields import ICReader
from spinlock.encoding.layout import Position, TokenLayout
from spinlock.encoding.outputs import write_tokens
from spinlock.encoding.search import TokenIndex, encode_operators, nearest
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.errors import DataError


def _layout(spec: dict[str, tuple[tuple[int, int], ...]]) -> TokenLayout:
    """``{stream: ((level, K), ...)}`` → layout in stream-then-level order."""
    return TokenLayout(tuple(spec), tuple(Position(s, lv, k) for s, levels in spec.items() for lv, k in levels))


def naive_distance(a, b, layout: TokenLayout, levels: int = 3) -> int:
    """The documented distance, written out: per stream, weight 2^(3-l) of every compared position at or
    below the stream's coarsest mismatching level."""
    total = 0
    for s in layout.streams:
        ps = sorted((p.level, j) for j, p in enumerate(layout.positions) if p.stream == s and p.level <= levels)
        first = next((lv for lv, j in ps if a[j] != b[j]), None)
        if first is not None:
            total += sum(2 ** (3 - lv) for lv, _ in ps if lv >= first)
    return total


TWO = _layout({"a": ((1, 4), (2, 4), (3, 4)), "b": ((1, 4), (2, 4), (3, 4))})


def test_planted_codes_distance_axioms_and_prefix_order():
    base = np.array([1, 2, 3, 0, 1, 2])
    fine, medium, coarse = base.copy(), base.copy(), base.copy()
    fine[2], medium[1], coarse[0] = 0, 0, 0  # stream a differs at level 3 / 2 / 1 only
    both_fine = fine.copy()
    both_fine[5] = 0
    ix = TokenIndex(np.stack([base, fine, medium, coarse, both_fine]), TWO)
    assert ix.max_distance == 14
    assert ix.scan(base).tolist() == [0, 1, 3, 7, 2]  # 1; 2 + 1; 4 + 2 + 1 (finer levels count once coarse differs)
    assert ix.distances(base).tolist() == [0, 1, 3, 7, 2]
    # coarse-only difference is farther than any finer-only difference, even summed over two streams
    assert ix.scan(coarse)[0] > ix.scan(both_fine)[0]
    # a coarse mismatch hides agreement below it: same distance whatever the finer codes
    other = coarse.copy()
    other[1:3] = [3, 1]
    assert TokenIndex(np.stack([base]), TWO).scan(other)[0] == 7

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (40, 6))  # K used 2 of 4: many partial agreements
    ix = TokenIndex(x, TWO)
    d = np.stack([ix.scan(q) for q in x])
    assert (np.diag(d) == 0).all() and (d == d.T).all()
    same = (x[:, None] == x[None]).all(-1)
    assert ((d == 0) == same).all()  # identity of indiscernibles
    for i, j, k in itertools.combinations(range(40), 3):
        assert d[i, k] <= d[i, j] + d[j, k]
    assert d[3, 7] == naive_distance(x[3], x[7], TWO)


def test_index_equals_brute_force_on_random_codes():
    layout = _layout({"c0": ((1, 3), (2, 5), (3, 7)), "c1": ((2, 4), (3, 2)), "c2": ((1, 2),),
                      "temporal": ((1, 6), (3, 3))})  # missing levels: the layout drops constant ones
    rng = np.random.default_rng(1)
    sizes = [p.codebook_size for p in layout.positions]
    x = np.stack([rng.integers(0, k, 300) for k in sizes], 1).astype(np.int32)
    for levels in (1, 2, 3):
        ix = TokenIndex(x, layout, levels)
        for q in rng.integers(0, 300, 25):
            ref = np.array([naive_distance(x[q], r, layout, levels) for r in x])
            assert np.array_equal(ix.scan(x[q]), ref) and np.array_equal(ix.distances(x[q]), ref)
            nb = ix.query(x[q], 12, [q])
            order = np.lexsort((np.arange(300), np.where(np.arange(300) == q, 10**9, ref)))[:12]
            assert nb.rows.tolist() == order.tolist() and nb.distances.tolist() == ref[order].tolist()
        assert ix.posting_entries == 300 * len(ix.columns)
    fresh = np.array([2, 4, 6, 3, 1, 1, 5, 2], np.int32)  # a query not in the data
    ix = TokenIndex(x, layout)
    assert np.array_equal(ix.distances(fresh), ix.scan(fresh))
    with pytest.raises(DataError, match="shape"):
        ix.query(fresh[:3])
    with pytest.raises(DataError, match=r"c0.l1 \(K=3\)"):
        ix.query(np.array([3, 4, 6, 3, 1, 1, 5, 2]))
    with pytest.raises(DataError, match="levels must be"):
        TokenIndex(x, layout, 4)
    with pytest.raises(DataError, match=r"no token position at levels 1..1 \(the layout has levels \[2, 3\]\)"):
        TokenIndex(x[:, 3:5], _layout({"c1": ((2, 4), (3, 2))}), 1)
    empty = TokenIndex(x[:0], layout)
    assert empty.query(fresh, 3).rows.size == 0
    assert nearest(np.array([2, 1, 1, 0]), 10, [3]).rows.tolist() == [1, 2, 0]


def _neighbors(capsys, *argv) -> tuple[int, list[tuple[int, int]], str]:
    rc = main(["neighbors", *map(str, argv)])
    out = capsys.readouterr()
    rows = [(int(m[1]), int(m[2])) for m in re.finditer(r"^\s+\d+\s+(\d+)\s+(\d+)\s", out.out, re.M)]
    return rc, rows, out.out + out.err


def test_cli_neighbors_on_a_synthetic_run(tmp_path, capsys):
    syn = make_run(tmp_path / "run", n=9)
    import h5py

    with h5py.File(syn.out / "dataset.h5") as f:
        tokens, layout = f["tokens"][()], TokenLayout.from_attrs(f["tokens"].attrs)
    ref = np.array([naive_distance(tokens[2], r, layout) for r in tokens])
    ref[2] = 10**9
    want = np.lexsort((np.arange(9), ref))[:4]
    png = tmp_path / "nb.png"
    rc, rows, text = _neighbors(capsys, syn.out, "--operator", 2, "-k", 4, "--out", png)
    assert rc == 0 and rows == [(int(r), int(ref[r])) for r in want]
    assert "kernel_size" not in text and "k=" in text  # key parameters the run has (its own names)
    assert re.search(r"(structured|collapsed|noise_dominated|grid_scale|undetermined)", text)
    from PIL import Image

    assert Image.open(png).size[0] > 5 * syn.grid  # query + 4 neighbours side by side

    nostore = make_run(tmp_path / "nostore", n=9, store_trajectories=False)
    rc, rows, text = _neighbors(capsys, nostore.out, "--operator", 2, "-k", 4, "--out", tmp_path / "x.png")
    assert rc == 0 and len(rows) == 4 and "no picture" in text and not (tmp_path / "x.png").exists()

    rc, _, text = _neighbors(capsys, syn.out, "--operator", 99)
    assert rc == 2 and "operator(s) [99] not in" in text
    rc, _, text = _neighbors(capsys, syn.out, "--operator", 1, "--tokenizer", tmp_path)
    assert rc == 2 and "give --dataset too" in text
    notok = make_run(tmp_path / "notok", n=9, tokens=False)
    rc, _, text = _neighbors(capsys, notok.out, "--operator", 1)
    assert rc == 2 and "no /tokens" in text


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """A synthetic run with a saved (k-means initialised, untrained) tokenizer and its tokens written."""
    run = write_synthetic_run(tmp_path_factory.mktemp("search"), n_operators=120, n_shards=2)
    tok, schema, files, _, _ = untrained_tokenizer(run.out)
    tok.save(run.out / "tokenizer")
    full = schema.batch_from_arrow(pa.concat_tables([pq.read_table(f) for f in files]))
    all_ic = ICReader(run.out / "dataset.h5").read(full.operator_index)
    tokens = tok.encode(full, all_ic).tokens
    write_tokens(run.out, full.operator_index, tokens, tok.layout, None)
    return run, tok, full, all_ic, tokens


def test_new_operator_path_encodes_like_the_tokenizer(tokenized, tmp_path, capsys):
    run, tok, full, ic, tokens = tokenized
    ops = full.operator_index[[7, 100, 3]]  # any order, rows from both shards
    loaded = Tokenizer.load(run.out / "tokenizer")
    got = encode_operators(loaded, run.out, ops)
    assert np.array_equal(got, tokens[[7, 100, 3]])
    with pytest.raises(DataError, match=r"operator\(s\) \[100000\] not in"):
        encode_operators(loaded, run.out, [100000])

    op = int(full.operator_index[7])
    rc, rows, text = _neighbors(capsys, run.out, "--operator", op, "-k", 5, "--dataset", run.out,
                                "--tokenizer", run.out / "tokenizer")
    assert rc == 0 and "encoded with" in text
    # the query is itself in the searched run: found at distance 0
    assert (op, 0) in rows
    ix = TokenIndex(tokens, tok.layout)
    assert [d for _, d in rows] == ix.query(tokens[7], 5).distances.tolist()

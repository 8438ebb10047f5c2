"""The tokenize stage end to end on a local Ray: Ray Data cleaning, Ray Train with a worker failure
and resume, tokens in dataset.h5 and Parquet, ``spinlock encode``, Tokenizer.load, downstream readers."""

from __future__ import annotations

import json
import shutil
import signal

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from faults import failing_train_loop
from synthetic_features import write_synthetic_run

from spinlock.cli.main import main
from spinlock.distributed import train
from spinlock.encoding.icfields import ICReader
from spinlock.encoding.layout import TokenLayout, read_parquet_layout
from spinlock.encoding.model import LEVELS
from spinlock.encoding.schema import FeatureNameMismatch
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.storage.layout import METRICS_FILE
from spinlock.storage.reader import OperatorDataset, read_operators

pytestmark = pytest.mark.ray

TINY = {
    "validation_fraction": 0.2,
    "categories": {"min_categories": 2, "max_categories": 10},
    # code_resolution 2: the planted groups resolve into few cells, so most are discrete: one token, their
    # other levels one code (not positions)
    "model": {"latent_dim": 8, "hidden_dim": 32, "ic_resolution": 8, "codebook_sizes": [8, 16, 16],
              "code_resolution": 2.0, "tokens": [8, 16, 24], "components_per_stream": 4},
    # checkpoint_seconds 0: a checkpoint every epoch, so the fault at epoch 1 resumes from epoch 0
    "training": {"epochs": 3, "batch_size": 32, "max_failures": 1, "num_workers": 1, "checkpoint_seconds": 0},
}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tokenized(ray_local, tmp_path_factory):
    """One ``spinlock tokenize`` whose training worker fails once at the start of epoch 1."""
    tmp = tmp_path_factory.mktemp("tok")
    run = write_synthetic_run(tmp / "run", n_operators=160, n_shards=2, seed=11, tokenizer=TINY)
    order = tmp / "fail-epoch-1"
    order.touch()
    sigint = signal.getsignal(signal.SIGINT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "train_loop_per_worker", failing_train_loop(order, epoch=1))
        assert main(["tokenize", str(run.out)]) == 0
    # Ray Train's fit installs a SIGINT handler (abort its controller) and leaves it; the stage puts ours back
    assert signal.getsignal(signal.SIGINT) is sigint
    assert not order.exists() and order.with_name(order.name + ".taken").exists()  # the fault really fired
    with h5py.File(run.out / "dataset.h5", "r") as f:
        tokens = f["tokens"][()]
    return run, tokens


def test_feature_tables_are_read_on_the_v1_parquet_datasource(tokenized):
    """Blocks per table (not one for all), footers read once when the read is planned (no per-execution ListFiles
    task, see read_features); the user's DataContext setting is left as it was."""
    import ray

    from spinlock.distributed.feature_stream import read_features

    run, _ = tokenized
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ds, _ = read_features(run.out)
    assert ctx.use_datasource_v2 == before
    assert type(ds._logical_plan.dag).__name__ == "Read"  # V2 plans ListFiles -> ReadFiles
    assert ds.materialize().num_blocks() >= 2  # a block per table (or row group): two tables here


def test_training_resumed_from_the_epoch_checkpoint(tokenized):
    run, _ = tokenized
    history = [json.loads(line) for line in (run.out / "tokenizer" / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1, 2]  # epoch 0 ran once: resumed, not restarted
    assert [r["attempt_start_epoch"] for r in history] == [0, 1, 1]
    for r in history:
        v = r["validation"]
        assert len(v["codebook_usage"]) == LEVELS and all(0 < u <= 1 for u in v["codebook_usage"] if u == u)
        assert set(v["r2"]) >= {"all", "initial", "architecture", "summary", "temporal", "ic"}


def test_tokens_in_dataset_and_parquet(tokenized):
    run, tokens = tokenized
    tok = Tokenizer.load(run.out / "tokenizer")
    cats = tok.category_names
    assert cats[-2:] == ["temporal", "ic"]
    assert len({c.split(".")[0] for c in cats[:-2]}) == 6  # the 6 planted groups' streams (a group may have two)
    layout = tok.layout
    with h5py.File(run.out / "dataset.h5", "r") as f:
        assert f["tokens"].dtype == np.int32 and f["tokens"].shape == (run.n_operators, len(layout.positions))
        assert TokenLayout.from_attrs(f["tokens"].attrs).positions == layout.positions
        status = f["status"][()]
        learned = f["features/initial_learned"]
        assert learned.shape == (run.n_operators, 28) and np.isfinite(learned[()]).all()
        assert [str(n) for n in learned.attrs["names"]][:2] == ["learned_00", "learned_01"]
        assert learned[()].std(axis=0).min() > 0  # a trained embedding, not a constant
    # only informative positions: K >= 2 and more than one code among the converged operators
    sizes = np.array([p.codebook_size for p in layout.positions])
    planned = TokenLayout.plan(tok.spec)
    assert sizes.min() >= 2 and len(layout.positions) + len(layout.dropped) == len(cats) * LEVELS
    assert len(planned.dropped) > 0, "the fixture should plan some one-code levels"  # [k, 1, 1] streams
    assert all(p not in layout.positions for p, _ in planned.dropped)
    ok = tokens[status == 0]
    assert all(len(np.unique(ok[:, j])) > 1 for j in range(ok.shape[1]))
    assert (tokens >= 0).all() and (tokens < sizes).all()
    summary = json.loads((run.out / "tokenizer" / "summary.json").read_text())
    assert summary["tokens"]["positions"] == len(layout.positions) and summary["tokens"]["constant_positions"] == []
    assert summary["tokens"]["single_code_books"] == [sum(1 for p, _ in planned.dropped if p.level == lv)
                                                      for lv in (1, 2, 3)]
    table = pq.read_table(run.out / "tokens.parquet")
    assert read_parquet_layout(table.schema).positions == layout.positions
    assert table.column_names == ["operator_index", *layout.names]
    assert np.array_equal(table.column("operator_index").to_numpy(), np.arange(run.n_operators))
    assert np.array_equal(np.stack([table.column(c).to_numpy() for c in table.column_names[1:]], 1), tokens)


def test_tokenizer_load_reproduces_tokens_in_process(tokenized):
    run, tokens = tokenized
    tok = Tokenizer.load(run.out / "tokenizer")
    reader = ICReader(run.out / "dataset.h5")
    for path in sorted((run.out / "features").glob("*.parquet")):
        table = pq.read_table(path)
        idx = table.column("operator_index").to_numpy()
        out = tok.encode_table(table, reader.read(idx))
        assert np.array_equal(out.tokens, tokens[idx])
    renamed = table.rename_columns([("summary.renamed" if c == "summary.g5.f1" else c)
                                    for c in table.column_names])
    with pytest.raises(FeatureNameMismatch, match="summary.g5.f1"):
        tok.encode_table(renamed, reader.read(idx))


def test_encode_command_reproduces_tokens(tokenized, tmp_path):
    run, tokens = tokenized
    copy = tmp_path / "copy"
    shutil.copytree(run.out, copy, ignore=shutil.ignore_patterns("tokenizer", "tokens.parquet"))
    with h5py.File(copy / "dataset.h5", "a") as f:
        del f["tokens"]
    assert main(["encode", str(copy), "--tokenizer", str(run.out / "tokenizer")]) == 0
    with h5py.File(copy / "dataset.h5", "r") as f, h5py.File(run.out / "dataset.h5", "r") as orig:
        assert np.array_equal(f["tokens"][()], tokens)
        assert TokenLayout.from_attrs(f["tokens"].attrs) == TokenLayout.from_attrs(orig["tokens"].attrs)
    assert read_parquet_layout(pq.read_schema(copy / "tokens.parquet")).names == Tokenizer.load(
        run.out / "tokenizer").layout.names


def test_encode_command_refuses_other_feature_names(tokenized, tmp_path, capsys):
    run, _ = tokenized
    other = write_synthetic_run(tmp_path / "other", n_operators=40, n_shards=1)
    path = other.out / "features" / "shard-00000.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"spinlock"])
    meta["names"]["summary"] = ["renamed" if n == "g5.f1" else n for n in meta["names"]["summary"]]
    table = table.rename_columns(["summary.renamed" if c == "summary.g5.f1" else c for c in table.column_names])
    pq.write_table(table.replace_schema_metadata({b"spinlock": json.dumps(meta).encode()}), path)
    assert main(["encode", str(other.out), "--tokenizer", str(run.out / "tokenizer")]) == 2
    assert "missing 1: 'summary.g5.f1'" in capsys.readouterr().err


def test_downstream_dataset_and_ray_reader(tokenized):
    run, tokens = tokenized
    ds = OperatorDataset(run.out / "dataset.h5")
    assert len(ds) == run.n_operators
    item = ds[7]
    assert torch.equal(item["tokens"], torch.from_numpy(tokens[7]))
    assert item["ic"].shape == (2, 16, 16) and item["features.temporal"].shape == (8, 2)
    names = ds.names()["tokens"]
    tok = Tokenizer.load(run.out / "tokenizer")
    assert names == tok.layout.names
    streams = [tok.spec.encoder_names.index(n.rsplit(".l", 1)[0]) for n in names]  # stream by stream, in order
    assert streams == sorted(streams) and len(set(streams)) > 1
    assert ds.names()["features.initial_learned"][0] == "learned_00"
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2)  # handle reopened per worker
    assert torch.equal(torch.cat([b["tokens"] for b in loader]), torch.from_numpy(tokens))
    rows = read_operators(run.out, fields=["operator_index", "tokens", "ic"], rows_per_block=50)
    got = {int(i): t for b in rows.iter_batches(batch_format="numpy")
           for i, t in zip(b["operator_index"], b["tokens"], strict=True)}
    assert len(got) == run.n_operators and all(np.array_equal(got[i], tokens[i]) for i in got)

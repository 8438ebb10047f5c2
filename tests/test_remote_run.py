"""``spinlock run --out s3://...`` end to end against a real S3-compatible server (moto) on loopback.

One in-process run to the bucket; ``info --check`` and the Python readers on its URI; then a
``spinlock run`` subprocess (a separate driver on the same Ray) SIGKILLed once its Ray Train checkpoint
is in the bucket, and a rerun that resumes from that checkpoint and writes the same tokens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import ray
from conftest import ROOT, tiny_config
from moto_s3 import moto_s3_with_ray

from spinlock.cli.main import main
from spinlock.storage.layout import META_FILE
from spinlock.storage.remote import RemoteStore

pytestmark = pytest.mark.ray

BUCKET = "spin"
# a fast tokenizer (see test_tokenizer_ray.py); enough epochs that a driver can be killed mid-fit
SETTINGS = {
    "simulation.num_operators": 24,
    "sharding.operators_per_shard": 8,
    "tokenizer.validation_fraction": 0.2,
    "tokenizer.model.latent_dim": 4,
    "tokenizer.model.components_per_stream": 2,
    "tokenizer.model.hidden_dim": 16,
    "tokenizer.model.ic_resolution": 8,
    "tokenizer.model.codebook_sizes": "[4, 4, 4]",
    "tokenizer.training.epochs": 6,
    "tokenizer.training.batch_size": 8,
    "tokenizer.training.kmeans_init_rows": 16,
    "tokenizer.training.checkpoint_seconds": 0,  # a checkpoint every epoch: the kill lands after one
}
SETS = [f"{k}={v}" for k, v in SETTINGS.items()]


@pytest.fixture(scope="module")
def s3():
    with moto_s3_with_ray(BUCKET) as store:
        yield store


def keys(store: RemoteStore, prefix: str) -> list[str]:
    store.fs.invalidate_cache()
    return sorted(k.split(f"{prefix}/", 1)[1] for k in store.fs.find(f"{BUCKET}/{prefix}"))


def bucket_tokens(store: RemoteStore, prefix: str, tmp_path) -> np.ndarray:
    local = store.download(f"{prefix}/dataset.h5", tmp_path / f"{prefix.replace('/', '-')}.h5")
    with h5py.File(local, "r") as f:
        return f["tokens"][()]


@pytest.fixture(scope="module")
def completed(s3, tmp_path_factory):
    """One uninterrupted ``spinlock run`` to the bucket (the CLI in this process)."""
    stage = tmp_path_factory.mktemp("stage")
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    from spinlock.config import dump_config

    cfg.write_text(dump_config(tiny_config(**SETTINGS, **{"distributed.staging_dir": str(stage)})))
    assert main(["run", str(cfg), "--out", f"s3://{BUCKET}/runs/a", "--address",
                 ray.get_runtime_context().gcs_address]) == 0
    return cfg


def test_run_to_s3_writes_every_output_to_the_bucket(s3, completed, tmp_path):
    got = keys(s3, "runs/a")
    for name in ("config.yaml", "dataset.h5", "tokens.parquet", "tokenizer/" + META_FILE, "tokenizer/metrics.jsonl",
                 "tokenizer/summary.json", "report/index.html", "report/summary.md",
                 *[f"shards/shard-0000{i}.h5" for i in range(3)],
                 *[f"features/shard-0000{i}.parquet" for i in range(3)]):
        assert name in got, name
    assert any(k.startswith("tokenizer/ray/tokenizer-") and "checkpoint_" in k for k in got)  # Ray Train storage
    assert not any(k.endswith((".tmp", ".download")) for k in got)
    tokens = bucket_tokens(s3, "runs/a", tmp_path)
    assert tokens.shape[0] == 24 and tokens.dtype == np.int32
    summary = json.loads(s3.fs.cat_file(f"{BUCKET}/runs/a/tokenizer/summary.json"))
    assert summary["operators"] == 24 and summary["epochs"] == SETTINGS["tokenizer.training.epochs"]

    import pyarrow.parquet as pq

    table = pq.read_table(s3.fs.open(f"{BUCKET}/runs/a/tokens.parquet", "rb"))
    assert table.column("operator_index").to_pylist() == list(range(24))


def test_info_check_and_readers_on_the_bucket(s3, completed, capsys):
    from spinlock.storage.reader import OperatorDataset, read_operators
    from spinlock.viz.rundata import RunData

    assert main(["info", f"s3://{BUCKET}/runs/a", "--check"]) == 0
    assert "format check passed" in capsys.readouterr().out
    s3.fs.pipe_file(f"{BUCKET}/runs/bad/dataset.h5", b"not hdf5")
    assert main(["info", f"s3://{BUCKET}/runs/bad/dataset.h5", "--check"]) == 2  # a clear error, not a traceback
    assert "not a readable HDF5 file" in capsys.readouterr().err

    assert RunData(f"s3://{BUCKET}/runs/a").has_tokens
    rows = read_operators(f"s3://{BUCKET}/runs/a/dataset.h5", fields=["operator_index"]).take_all()
    assert sorted(int(r["operator_index"]) for r in rows) == list(range(24))
    ds = OperatorDataset(f"s3://{BUCKET}/runs/a", fields=["operator_index", "tokens"])
    assert len(ds) == 24 and ds[5]["operator_index"].item() == 5


def test_uris_are_refused_before_any_work(s3, tmp_path, capsys):
    cfg = str(ROOT / "configs" / "quickstart.yaml")
    cases = [
        (["run", cfg, "--out", "s3://no-such-bucket/run"], "bucket 'no-such-bucket' does not exist"),
        (["run", cfg, "--out", "http://host/run"], "unsupported URI scheme 'http'"),
        (["tokenize", f"s3://{BUCKET}/nothing-here"], f"no dataset at s3://{BUCKET}/nothing-here/dataset.h5"),
        (["visualize", f"s3://{BUCKET}/runs/a", "--out", f"s3://{BUCKET}/viz"], "must be a local path"),
        (["replay", f"s3://{BUCKET}/runs/a", "--operator", "0", "--save", "s3://b/x.npy"], "must be a local path"),
    ]
    for argv, message in cases:
        t = time.perf_counter()
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
        assert time.perf_counter() - t < 10, argv  # refused up front, not after failing shards


def test_missing_extra_names_it(monkeypatch, capsys):
    """gs:// without gcsfs: the error names the extra to install, before any work."""
    import fsspec

    real = fsspec.core.url_to_fs

    def no_gcsfs(url, **kw):
        if url.startswith("gs://"):
            raise ImportError("Install gcsfs to access Google Storage")
        return real(url, **kw)

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_gcsfs)
    assert main(["run", str(ROOT / "configs" / "quickstart.yaml"), "--out", "gs://b/run"]) == 2
    assert "pip install 'spinlock[gcs]'" in capsys.readouterr().err


def registered_checkpoint(store: RemoteStore, ray_dir: str) -> bool:
    """Whether Ray Train's checkpoint manager snapshot in the bucket names a checkpoint (what a new driver
    resumes from; a checkpoint folder alone is not registered until the snapshot is written)."""
    store.fs.invalidate_cache()
    snapshots = [k for k in (store.fs.find(f"{BUCKET}/{ray_dir}") if store.fs.exists(f"{BUCKET}/{ray_dir}") else [])
                 if k.endswith("checkpoint_manager_snapshot.json")]
    for key in snapshots:
        try:
            text = store.fs.cat_file(key)
        except FileNotFoundError:
            continue
        state = json.loads(text)
        if isinstance(state, str):  # stored as a JSON string of the state
            state = json.loads(state)
        if state.get("latest_checkpoint_result"):
            return True
    return False


def test_killed_driver_resumes_from_the_bucket_checkpoint(s3, completed, tmp_path):
    """SIGKILL a ``spinlock run`` driver once its first Ray Train checkpoint is in the bucket; the rerun
    resumes from it (epoch 0 is not trained again) and writes the tokens of the uninterrupted run.

    The shards are copied from the completed run (generation then only merges: the test is about tokenize).
    """
    prefix = "runs/b"
    for key in s3.fs.find(f"{BUCKET}/runs/a"):
        rel = key.split("runs/a/", 1)[1]
        if rel == "config.yaml" or rel.startswith(("shards/", "features/")):
            s3.fs.copy(key, f"{BUCKET}/{prefix}/{rel}")
    argv = [sys.executable, "-m", "spinlock.cli.main", "run", str(completed), "--out", f"s3://{BUCKET}/{prefix}",
            "--address", ray.get_runtime_context().gcs_address]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if registered_checkpoint(s3, f"{prefix}/tokenizer/ray"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the driver finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert "tokens.parquet" not in keys(s3, prefix)  # killed during tokenize

    assert main(argv[3:]) == 0  # the rerun: a new driver
    history = [json.loads(line) for line in s3.fs.cat_file(f"{BUCKET}/{prefix}/tokenizer/metrics.jsonl").splitlines()]
    epochs = SETTINGS["tokenizer.training.epochs"]
    assert [r["epoch"] for r in history] == list(range(epochs))
    assert history[-1]["attempt_start_epoch"] > 0  # resumed from the bucket's checkpoint, not restarted
    np.testing.assert_array_equal(bucket_tokens(s3, prefix, tmp_path), bucket_tokens(s3, "runs/a", tmp_path))


def test_cache_refetches_only_changed_objects(s3, tmp_path):
    """local_copy keeps an unchanged object's cached copy and fetches a changed one (its ETag moved)."""
    from spinlock.storage.remote import local_copy

    s3.fs.pipe_file(f"{BUCKET}/cache/x/dataset.h5", b"one")
    first = local_copy(f"s3://{BUCKET}/cache/x/dataset.h5")
    stamp = first.stat().st_mtime_ns
    assert local_copy(f"s3://{BUCKET}/cache/x/dataset.h5").stat().st_mtime_ns == stamp
    s3.fs.pipe_file(f"{BUCKET}/cache/x/dataset.h5", b"two")
    assert local_copy(f"s3://{BUCKET}/cache/x/dataset.h5").read_bytes() == b"two"


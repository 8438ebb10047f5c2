"""Object-store output (``--out s3://...``) against a real S3-compatible server (moto) on loopback.

The server runs in a thread of this process; Ray actors reach it over HTTP with credentials and the
endpoint from their environment (``AWS_ENDPOINT_URL``), exactly as cluster nodes would.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from conftest import tiny_config
from faults import ORDERS_ENV, kill_order_runtime_env, order_kill
from moto_s3 import moto_s3_with_ray

from spinlock.storage.remote import is_remote

pytestmark = pytest.mark.ray

@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    saved = os.environ.get(ORDERS_ENV)
    # the kill-order hook's folder is set before Ray starts, so the workers inherit it
    with moto_s3_with_ray("spinlock-test", kill_order_runtime_env(tmp_path_factory.mktemp("orders"))) as store:
        yield store
    if saved is None:
        os.environ.pop(ORDERS_ENV, None)
    else:
        os.environ[ORDERS_ENV] = saved


def read_all(path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_is_remote():
    assert is_remote("s3://b/p") and is_remote("gs://b/p") and is_remote("GS://b")
    assert not is_remote("/data/run") and not is_remote("runs/x") and not is_remote("file:///tmp/x")


def test_s3_output_matches_local_and_resumes(s3, tmp_path):
    from spinlock.distributed.driver import GenerationRun, generate

    cfg = tiny_config(**{"distributed.cpu_headroom": 0, "distributed.staging_dir": str(tmp_path / "stage")})
    local = generate(cfg, tmp_path / "local", workers=2, show_progress=False)
    url = "s3://spinlock-test/runs/tiny"
    staged = generate(cfg, url, workers=2, show_progress=False)

    keys = sorted(k.split("runs/tiny/", 1)[1] for k in s3.fs.find("spinlock-test/runs/tiny"))
    assert keys == ["config.yaml", "dataset.h5",
                    *[f"features/shard-0000{i}.parquet" for i in range(3)],
                    *[f"shards/shard-0000{i}.h5" for i in range(3)]]  # nothing temporary left behind
    fetched = s3.download("runs/tiny/dataset.h5", tmp_path / "fetched.h5")
    with h5py.File(fetched, "r") as f:  # a self-contained copy: virtual datasets cannot point into S3
        assert not any(f[n].is_virtual for n in ("trajectories", "ics/fields", "features/summary"))
    ref = read_all(local)
    for got in (read_all(fetched), read_all(staged)):
        assert sorted(got) == sorted(ref)
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)

    # a new driver machine (empty staging), one corrupt object, one missing: only those two regenerate
    import shutil

    shutil.rmtree(tmp_path / "stage")
    s3.fs.pipe_file("spinlock-test/runs/tiny/shards/shard-00001.h5", b"not an hdf5 file")
    s3.fs.rm_file("spinlock-test/runs/tiny/shards/shard-00002.h5")
    run = GenerationRun(cfg, url, workers=2, show_progress=False)
    again = run.execute()
    assert sorted(s.shard_id for s in run.report.completed) == [1, 2]
    got = read_all(again)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    s3.download("runs/tiny/shards/shard-00001.h5", tmp_path / "s1.h5")
    with h5py.File(tmp_path / "s1.h5", "r") as f:
        assert bool(f.attrs["complete"]) and f["operators/index"][()].tolist() == [4, 5, 6, 7]


def test_actor_killed_mid_shard_publishes_nothing_and_merge_refuses(s3, tmp_path):
    """An object store has no rename: the staged shard is uploaded only after its local commit, so a
    writer that dies mid-shard leaves no key, and the run (no retries) fails instead of merging."""
    from pathlib import Path

    from spinlock.distributed.driver import generate
    from spinlock.errors import SpinlockError

    cfg = tiny_config(**{"distributed.cpu_headroom": 0, "distributed.staging_dir": str(tmp_path / "stage"),
                         "distributed.max_retries": 0})
    url = "s3://spinlock-test/runs/killed"
    taken = order_kill(Path(os.environ[ORDERS_ENV]), "shard-00001.h5")
    with pytest.raises(SpinlockError, match=r"1 shard\(s\) failed .* shard-00001.h5: actor died"):
        generate(cfg, url, workers=1, show_progress=False)
    assert taken.exists()
    keys = sorted(k.split("runs/killed/", 1)[1] for k in s3.fs.find("spinlock-test/runs/killed"))
    assert "shards/shard-00001.h5" not in keys and "features/shard-00001.parquet" not in keys
    assert "dataset.h5" not in keys
    assert generate(cfg, url, workers=1, show_progress=False)  # the rerun regenerates shard 1 and merges


def test_missing_bucket_is_a_clear_error(s3, tmp_path):
    from spinlock.distributed.driver import generate
    from spinlock.errors import SpinlockError

    cfg = tiny_config(**{"distributed.staging_dir": str(tmp_path)})
    with pytest.raises(SpinlockError, match="bucket 'no-such-bucket' does not exist"):
        generate(cfg, "s3://no-such-bucket/run", show_progress=False)


def test_s3_zarr_trajectories_go_straight_to_the_bucket(s3, tmp_path):
    """``storage.trajectories.format: zarr``: chunks are written into the bucket by the actors, never staged."""
    import zarr

    from spinlock.distributed.driver import GenerationRun, generate
    from spinlock.storage.checker import check_file
    from spinlock.storage.reader import OperatorDataset

    stage = tmp_path / "stage"
    cfg = tiny_config(**{"distributed.cpu_headroom": 0, "distributed.staging_dir": str(stage),
                         "storage.trajectories.format": "zarr"})
    local = generate(cfg, tmp_path / "local", workers=2, show_progress=False)
    url = "s3://spinlock-test/runs/zarr"
    staged = generate(cfg, url, workers=2, show_progress=False)

    keys = sorted(k.split("runs/zarr/", 1)[1] for k in s3.fs.find("spinlock-test/runs/zarr"))
    chunks = [k for k in keys if k.startswith("trajectories.zarr/trajectories/c/")]
    assert "trajectories.zarr/zarr.json" in keys and len(chunks) == 12 * 2  # N × M chunks of 5 steps
    assert not any(p.name == "trajectories.zarr" for p in stage.rglob("*"))  # no local copy
    ref = zarr.open_array(tmp_path / "local" / "trajectories.zarr" / "trajectories", mode="r")[:]
    remote = zarr.open_array(f"{url}/trajectories.zarr/trajectories", mode="r")
    assert np.array_equal(remote[:].view(np.uint32), ref.view(np.uint32))
    with h5py.File(staged, "r") as f:
        assert f.attrs["trajectories_store"] == f"{url}/trajectories.zarr" and "trajectories" not in f
    assert check_file(staged) == []
    assert np.array_equal(OperatorDataset(staged, fields=["trajectory"])[7]["trajectory"].numpy(), ref[7])
    a, b = read_all(local), read_all(staged)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)

    # a chunk lost from the bucket: its (published, complete) shard is regenerated on resume
    s3.fs.rm_file(f"spinlock-test/runs/zarr/{chunks[len(chunks) // 2]}")
    run = GenerationRun(cfg, url, workers=2, show_progress=False)
    run.execute()
    assert [s.shard_id for s in run.report.completed] == [1]
    assert np.array_equal(zarr.open_array(f"{url}/trajectories.zarr/trajectories", mode="r")[:].view(np.uint32),
                          ref.view(np.uint32))

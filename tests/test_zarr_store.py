"""Zarr v3 trajectory store (``storage.trajectories.format: zarr``) on a local output folder, without Ray.

The object-store path (moto's S3 server on loopback) is in test_remote.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from conftest import tiny_config

from spinlock.config.loading import ConfigError, config_hash
from spinlock.errors import DataError, SpinlockError
from spinlock.generate import pending_shards, plan_shards, prepare_output, run_shard
from spinlock.storage.checker import check_file
from spinlock.storage.layout import shard_path
from spinlock.storage.merge import merge_shards

ZARR = {"storage.trajectories.format": "zarr"}


def generate(cfg, out: Path) -> Path:
    prepare_output(cfg, out)
    _, todo = pending_shards(cfg, out)
    for spec in todo:
        run_shard(cfg, spec, out)
    return merge_shards(cfg, out)


def arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(hdf5 dataset, zarr run folder, zarr dataset) of the same tiny config."""
    base = tmp_path_factory.mktemp("zarr")
    h5 = generate(tiny_config(), base / "hdf5")
    ds = generate(tiny_config(**ZARR), base / "zarr")
    return h5, base / "zarr", ds


def test_zarr_run_equals_hdf5_run(runs):
    h5, out, ds = runs
    ref, got = arrays(h5), arrays(ds)
    only_h5 = ("trajectories", "realization", "time")  # the dataset and the scales only it uses
    assert "trajectories" not in got and sorted(got) == sorted(k for k in ref if k not in only_h5)
    for k, v in got.items():
        assert np.array_equal(v, ref[k], equal_nan=v.dtype.kind == "f"), k
    arr = zarr.open_array(out / "trajectories.zarr" / "trajectories", mode="r")
    assert arr.shape == (12, 2, 5, 3, 16, 16) and arr.chunks == (1, 1, 5, 3, 16, 16)  # one operator per chunk
    assert arr.compressors[0].cname.value == "lz4" and dict(arr.attrs)["steps"] == [0, 2, 4, 6, 8]
    assert np.array_equal(bits(arr[:]), bits(ref["trajectories"]))  # bit for bit
    with h5py.File(ds, "r") as f:
        assert f.attrs["trajectories_store"] == "trajectories.zarr"
    assert check_file(ds) == []
    for spec in plan_shards(tiny_config(**ZARR)):
        assert check_file(shard_path(out, spec.shard_id)) == []


def test_readers_see_zarr_trajectories(runs):
    from spinlock.replay import compare_with_stored, replay_operator
    from spinlock.storage.reader import OperatorDataset, _ReadRows, available_fields, describe
    from spinlock.viz.rundata import RunData

    h5, out, ds = runs
    ref = arrays(h5)["trajectories"]
    assert "trajectory" in available_fields(ds)
    item = OperatorDataset(ds, fields=["trajectory", "operator_index"])[5]
    assert np.array_equal(item["trajectory"].numpy(), ref[5])
    rows = _ReadRows(str(ds), ["trajectory"])({"id": np.array([7, 1, 7, 2])})["trajectory"]
    assert np.array_equal(rows, ref[[7, 1, 7, 2]])
    run = RunData(out)
    assert run.trajectory_shape == ref.shape and run.stored_stride == 2
    assert np.array_equal(run.trajectory(3, [0, 4, 8], [1]), ref[3, [1]][:, [0, 2, 4]])
    assert np.array_equal(run.trajectory(3, [2, 8]), ref[3][:, [1, 4]])
    cmp = compare_with_stored(out, replay_operator(out, 6))
    assert cmp.mode == "bit-exact" and cmp.ok, cmp
    assert "in Zarr" in describe(ds) and "in Zarr" in describe(shard_path(out, 1))
    with h5py.File(shard_path(out, 1), "r") as f:  # a shard's view starts at its first operator
        from spinlock.storage.zarrstore import open_trajectories

        assert np.array_equal(open_trajectories(f, shard_path(out, 1))[()], ref[4:8])


def test_synced_copy_of_a_bucket_reads_its_own_array(runs, tmp_path):
    from spinlock.storage.reader import OperatorDataset

    h5, out, _ = runs
    copy = tmp_path / "synced"
    shutil.copytree(out, copy)
    with h5py.File(copy / "dataset.h5", "a") as f:  # as recorded by an object-store run
        f.attrs["trajectories_store"] = "s3://no-such-bucket/run/trajectories.zarr"
    assert check_file(copy / "dataset.h5") == []
    got = OperatorDataset(copy, fields=["trajectory"])[2]["trajectory"].numpy()
    assert np.array_equal(got, arrays(h5)["trajectories"][2])


def test_other_codec_and_dtype_match_hdf5(tmp_path):
    over = {"storage.codec": "zstd", "storage.trajectories.dtype": "float16", "simulation.num_operators": 4}
    h5 = arrays(generate(tiny_config(**over), tmp_path / "h"))["trajectories"]
    generate(tiny_config(**over, **ZARR), tmp_path / "z")
    arr = zarr.open_array(tmp_path / "z" / "trajectories.zarr" / "trajectories", mode="r")
    assert arr.dtype == np.float16 and arr.compressors[0].cname.value == "zstd"
    assert np.array_equal(bits(arr[:]), bits(h5))


def chunk_files(out: Path, operator: int) -> list[Path]:
    return sorted((out / "trajectories.zarr" / "trajectories" / "c" / str(operator)).rglob("*"), key=str)


def test_resume_regenerates_partial_shards_and_overwrites_chunks(runs, tmp_path):
    _, out, ds = runs
    cfg = tiny_config(**ZARR)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = zarr.open_array(out / "trajectories.zarr" / "trajectories", mode="r")[:]

    # shard 2 was committed, but one of its chunks is gone: the merge and the checker refuse
    [f for f in chunk_files(copy, 9) if f.is_file()][0].unlink()
    with pytest.raises(DataError, match=r"1 chunk\(s\) of operators \[0, 12\) not written"):
        merge_shards(cfg, copy)
    assert any("not written" in p for p in check_file(shard_path(copy, 2)))
    # shard 1 crashed before its commit: a leftover tmp file, one chunk garbage, one never written
    shard_path(copy, 1).rename(str(shard_path(copy, 1)) + ".tmp")
    files = [f for f in chunk_files(copy, 5) if f.is_file()]
    files[0].write_bytes(b"garbage")
    [f for f in chunk_files(copy, 6) if f.is_file()][0].unlink()

    done, todo = pending_shards(cfg, copy)
    assert [s.shard_id for s in todo] == [1, 2] and [s.shard_id for s in done] == [0]
    for spec in todo:
        run_shard(cfg, spec, copy)
    again = merge_shards(cfg, copy)
    assert check_file(again) == []
    assert np.array_equal(bits(zarr.open_array(copy / "trajectories.zarr" / "trajectories", mode="r")[:]), bits(before))
    for k, v in arrays(ds).items():
        assert np.array_equal(v, arrays(again)[k], equal_nan=v.dtype.kind == "f"), k


def test_failed_shard_is_not_complete(tmp_path, monkeypatch):
    import spinlock.storage.shard as shard

    cfg = tiny_config(**ZARR)
    prepare_output(cfg, tmp_path)

    def boom(self, *a, **k):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(shard.ShardWriter, "commit", boom)  # chunks written, shard never committed
    with pytest.raises(RuntimeError, match="injected"):
        run_shard(cfg, plan_shards(cfg)[0], tmp_path)
    assert list((tmp_path / "shards").iterdir()) == []
    assert [s.shard_id for s in pending_shards(cfg, tmp_path)[1]] == [0, 1, 2]


def test_array_of_another_run_is_refused(runs, tmp_path):
    from spinlock.storage.zarrstore import TrajectoryArray, open_for_write

    _, out, _ = runs
    shutil.copytree(out / "trajectories.zarr", tmp_path / "trajectories.zarr")
    cfg = tiny_config(**ZARR, seed=3)
    with pytest.raises(SpinlockError, match="trajectory array of another run"):
        open_for_write(TrajectoryArray.of(cfg.simulation, cfg.storage, config_hash(cfg)), tmp_path)


def test_zarr_without_stored_trajectories_is_one_clear_error():
    with pytest.raises(ConfigError) as e:
        tiny_config(**ZARR, **{"storage.trajectories.store": False})
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and "storage.trajectories: format 'zarr' needs store: true" in lines[1]

"""End-to-end generation core without Ray: format, determinism across shard plans, replay, resume."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, tiny_config

from spinlock.errors import DataError, SpinlockError
from spinlock.generate import pending_shards, plan_shards, prepare_output, run_shard
from spinlock.replay import compare_with_stored, replay_operator
from spinlock.storage.checker import SPEC, check_file
from spinlock.storage.layout import parquet_path, shard_path
from spinlock.storage.merge import check_indices, merge_shards


def generate(cfg, out: Path, merge: str | None = None) -> Path:
    prepare_output(cfg, out)
    _, todo = pending_shards(cfg, out)
    for spec in todo:
        run_shard(cfg, spec, out)
    return merge_shards(cfg, out, merge)


def arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    out = tmp_path_factory.mktemp("run_a")
    cfg = tiny_config()
    return cfg, out, generate(cfg, out)


def test_files_conform_to_the_format_spec(run_a):
    cfg, out, ds = run_a
    assert check_file(ds) == []
    for spec in plan_shards(cfg):
        assert check_file(shard_path(out, spec.shard_id)) == []
    with h5py.File(ds, "r") as f:
        assert f["trajectories"].is_virtual and f["trajectories"].shape == (12, 2, 5, 3, 16, 16)
        assert np.array_equal(f["operators/index"][()], np.arange(12))
        # the IC is stored as step 0 of every realization
        assert np.array_equal(f["trajectories"][:, 0, 0], f["ics/fields"][()])
        assert "stratification" in f["parameters"].attrs


def test_spec_is_documented():
    doc = (ROOT / "docs" / "dataset-format.md").read_text()
    for path, *_ in SPEC:
        assert f"`/{path}`" in doc, f"/{path} missing from docs/dataset-format.md"


def test_checker_catches_problems(run_a, tmp_path):
    cfg, out, _ = run_a
    bad = tmp_path / "bad.h5"
    shutil.copy(shard_path(out, 0), bad)
    with h5py.File(bad, "a") as f:
        del f["status"]
        f["features/summary"].attrs["names"] = ["x"] * f["features/summary"].shape[1]
    problems = check_file(bad)
    assert "missing dataset 'status'" in problems
    assert any("not unique" in p for p in problems)


def test_identical_across_shard_plans(run_a, tmp_path):
    cfg, _, ds = run_a
    other = tiny_config(**{"sharding.operators_per_shard": 8})
    ds2 = generate(other, tmp_path / "b")
    a, b = arrays(ds), arrays(ds2)
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype.kind == "f":
            assert np.array_equal(a[k], b[k], equal_nan=True), k
        else:
            assert np.array_equal(a[k], b[k]), k


def test_different_seed_gives_different_data(run_a, tmp_path):
    _, _, ds = run_a
    other = generate(tiny_config(seed=1), tmp_path / "s1")
    assert not np.array_equal(arrays(ds)["ics/fields"], arrays(other)["ics/fields"])


@pytest.mark.parametrize("index", [0, 7])
def test_replay_is_bit_identical(run_a, index):
    _, out, _ = run_a
    rep = replay_operator(out, index)
    cmp = compare_with_stored(out, rep)
    assert cmp.mode == "bit-exact" and cmp.ok, cmp
    assert rep.trajectory.shape == (2, 9, 3, 16, 16)


def test_replay_errors(run_a):
    _, out, _ = run_a
    with pytest.raises(DataError, match="out of range"):
        replay_operator(out, 12)
    with pytest.raises(DataError, match="no dataset"):
        replay_operator(out / "nope", 0)


def test_parquet_matches_hdf5(run_a):
    cfg, out, _ = run_a
    table = pq.read_table(parquet_path(out, 1))
    with h5py.File(shard_path(out, 1), "r") as f:
        names = [str(x) for x in f["features/summary"].attrs["names"]]
        summ = f["features/summary"][()]
        temporal = f["features/temporal"][()]
        tnames = [str(x) for x in f["features/temporal"].attrs["names"]]
    assert table.column("operator_index").to_pylist() == [4, 5, 6, 7]
    col = np.asarray(table.column(f"summary.{names[3]}").to_numpy(zero_copy_only=False))
    assert np.array_equal(col, summ[:, 3], equal_nan=True)
    curve = np.stack(table.column(f"temporal.{tnames[0]}").to_numpy(zero_copy_only=False))
    assert np.array_equal(curve, temporal[:, :, 0], equal_nan=True)


def test_resume_regenerates_only_broken_shards(run_a, tmp_path):
    cfg, out, ds = run_a
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = arrays(ds)
    shard_path(copy, 0).unlink()  # missing
    with open(shard_path(copy, 1), "r+b") as fh:  # corrupt (truncated)
        fh.truncate(1000)
    with h5py.File(shard_path(copy, 2), "a") as f:  # not marked complete
        f.attrs["complete"] = False
    Path(str(shard_path(copy, 0)) + ".tmp").write_bytes(b"partial")  # leftover tmp
    stamp = os.stat(parquet_path(copy, 1)).st_mtime_ns
    done, todo = pending_shards(cfg, copy)
    assert [s.shard_id for s in todo] == [0, 1, 2] and not done
    assert not Path(str(shard_path(copy, 0)) + ".tmp").exists()
    for spec in todo:
        run_shard(cfg, spec, copy)
    after = arrays(merge_shards(cfg, copy))
    for k in before:
        assert np.array_equal(before[k], after[k], equal_nan=before[k].dtype.kind == "f"), k
    assert os.stat(parquet_path(copy, 1)).st_mtime_ns != stamp


def test_failed_shard_leaves_nothing_behind(tmp_path, monkeypatch):
    cfg = tiny_config()
    prepare_output(cfg, tmp_path)
    import spinlock.generate as gen

    def boom(*a, **k):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(gen.RolloutEngine, "run", boom)
    with pytest.raises(RuntimeError, match="injected"):
        run_shard(cfg, plan_shards(cfg)[0], tmp_path)
    assert list((tmp_path / "shards").iterdir()) == []


def test_merge_refuses_incomplete_runs_and_bad_indices(run_a, tmp_path):
    cfg, out, _ = run_a
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard_path(copy, 2).unlink()
    with pytest.raises(DataError, match=r"1 shard\(s\) not complete: shard-00002.h5 \(missing\)"):
        merge_shards(cfg, copy)
    with pytest.raises(DataError, match=r"missing \[2\].*duplicated \[1\]"):
        check_indices(np.array([0, 1, 1, 3]), 4)


def test_virtual_dataset_survives_moving_the_folder_and_equals_copy(run_a, tmp_path):
    cfg, out, ds = run_a
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        a = arrays(moved / "dataset.h5")
    finally:
        os.chdir(cwd)
    copy = arrays(merge_shards(cfg, moved, "copy"))
    with h5py.File(moved / "dataset.h5", "r") as f:
        assert not f["trajectories"].is_virtual
    for k, v in arrays(ds).items():
        assert np.array_equal(v, a[k], equal_nan=v.dtype.kind == "f"), k
        assert np.array_equal(v, copy[k], equal_nan=v.dtype.kind == "f"), k


def test_output_dir_of_another_run_is_refused(run_a):
    _, out, _ = run_a
    with pytest.raises(SpinlockError, match="different config"):
        prepare_output(tiny_config(seed=5), out)
    # execution-only sections may change on resume
    prepare_output(tiny_config(), out)

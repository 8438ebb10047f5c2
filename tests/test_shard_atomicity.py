"""Shard atomicity without timing: a writer process killed mid-shard, the order of fsyncs and rename, and
two writers of one shard at once.

Each test fails on one deliberate bug in :class:`spinlock.storage.shard.ShardWriter`: writing in place
instead of a temporary + rename, setting the completion marker before the data, dropping either fsync,
and one temporary name shared by every attempt (a writer cut off from the cluster blocks the retry).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import tiny_config

from spinlock.errors import DataError
from spinlock.generate import plan_shards, prepare_output, run_shard
from spinlock.storage.durable import temp_files
from spinlock.storage.layout import parquet_path, shard_path
from spinlock.storage.merge import merge_shards
from spinlock.storage.shard import inspect_shard

TWO_BATCHES = {"simulation.batch_operators": 2}  # shards of 4 operators written in two batches


def _die_mid_shard(out: str, kill_after_batches: int) -> None:
    """Child process: generate shard 0 and die (no cleanup, no finally) after some batches are written."""
    import spinlock.generate as gen

    cfg = tiny_config(**TWO_BATCHES)
    written = 0
    real = gen.ShardWriter.write_features

    def write_then_maybe_die(self, start, blocks):
        nonlocal written
        real(self, start, blocks)
        written += 1
        if written == kill_after_batches:
            self.f.flush()  # what was written so far is on disk, as after any real crash
            os._exit(17)

    gen.ShardWriter.write_features = write_then_maybe_die
    gen.run_shard(cfg, plan_shards(cfg)[0], out)


@pytest.mark.parametrize("batches", [1, 2])
def test_process_killed_mid_shard_leaves_nothing_final_and_merge_refuses(tmp_path, batches):
    cfg = tiny_config(**TWO_BATCHES)
    prepare_output(cfg, tmp_path)
    for spec in plan_shards(cfg)[1:]:
        run_shard(cfg, spec, tmp_path)
    proc = mp.get_context("spawn").Process(target=_die_mid_shard, args=(str(tmp_path), batches))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 17
    final = shard_path(tmp_path, 0)
    assert not final.exists(), "a killed writer left a file at the final path"
    [tmp] = temp_files(final)
    with h5py.File(tmp, "r") as f:  # the marker is set only after the data, at commit
        assert not bool(f.attrs["complete"])
        assert f["status"].shape == (4,)
    assert inspect_shard(final, "any") == "partial"
    with pytest.raises(DataError, match=r"shard-00000.h5 \(partial\)"):
        merge_shards(cfg, tmp_path)


def test_shard_and_table_are_fsynced_before_and_their_folders_after_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def ours(path) -> bool:  # the shard's own files and folders, not config.yaml or pytest's
        return os.path.relpath(path, tmp_path).startswith(("shards", "features"))

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if ours(path):
            events.append(("fsync", path))
        real_fsync(fd)

    def replace(src, dst):
        if ours(src):
            events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cfg = tiny_config()
    prepare_output(cfg, tmp_path)
    run_shard(cfg, plan_shards(cfg)[0], tmp_path)
    expected = []
    for final in (str(shard_path(tmp_path, 0)), str(parquet_path(tmp_path, 0))):
        tmp = events[len(expected)][1]  # the attempt's own temporary: NAME.<random>.tmp
        assert tmp.startswith(final + ".") and tmp.endswith(".tmp")
        expected += [("fsync", tmp), ("replace", f"{tmp} -> {final}"), ("fsync", str(Path(final).parent))]
    assert events == expected
    with h5py.File(shard_path(tmp_path, 0), "r") as f:
        assert bool(f.attrs["complete"]) and np.array_equal(f["operators/index"][()], np.arange(4))


def _write_until_released(out: str, release: str) -> None:
    """Child process: write shard 0, then wait before its commit (holding the file open) until ``release``
    exists: an actor on a node cut off from the cluster, still writing to the shared filesystem."""
    import time

    import spinlock.generate as gen

    real = gen.ShardWriter.commit

    def commit_when_released(self, extra_attrs=None):
        Path(release + ".waiting").touch()
        while not os.path.exists(release):
            time.sleep(0.05)
        real(self, extra_attrs)

    gen.ShardWriter.commit = commit_when_released
    cfg = tiny_config()
    gen.run_shard(cfg, plan_shards(cfg)[0], out)


def test_a_second_writer_of_a_shard_is_not_blocked_and_the_late_commit_is_identical(tmp_path):
    cfg = tiny_config()
    prepare_output(cfg, tmp_path)
    release = tmp_path / "release"
    cut_off = mp.get_context("spawn").Process(target=_write_until_released, args=(str(tmp_path), str(release)))
    cut_off.start()
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{release}.waiting").exists():
            assert cut_off.is_alive() and time.monotonic() < deadline, "the first writer never reached its commit"
            time.sleep(0.05)
        final = shard_path(tmp_path, 0)
        run_shard(cfg, plan_shards(cfg)[0], tmp_path)  # the retry, while the first writer holds its file
        with h5py.File(final, "r") as f:
            retry = {k: f[k][()] for k in ("operators/index", "ics/fields", "trajectories", "features/summary")}
        table, inode = parquet_path(tmp_path, 0).read_bytes(), final.stat().st_ino
        release.touch()
        cut_off.join(120)
        assert cut_off.exitcode == 0
    finally:
        cut_off.kill()
    assert final.stat().st_ino != inode, "the first writer's commit did not replace the shard"
    assert temp_files(final) == [] and temp_files(parquet_path(tmp_path, 0)) == []
    with h5py.File(final, "r") as f:  # now the late writer's file: complete, the same rows
        assert bool(f.attrs["complete"])
        for k, v in retry.items():
            np.testing.assert_array_equal(f[k][()], v, err_msg=k)
    assert parquet_path(tmp_path, 0).read_bytes() == table

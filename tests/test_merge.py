"""Merge: one-open shard verification, exactly-once indices, reuse of the resume scan, VDS mappings, and
reading the merged rows one shard file at a time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import tiny_config

import spinlock.encoding.icfields as icfields
import spinlock.storage.merge as merge_mod
import spinlock.storage.rows as rows_mod
from spinlock.encoding.icfields import ICReader
from spinlock.errors import DataError
from spinlock.generate import pending_shards, plan_shards, prepare_output, run_shard
from spinlock.storage import dims
from spinlock.storage.checker import SPEC
from spinlock.storage.layout import DATASET_FILE, shard_path
from spinlock.storage.merge import merge_shards, verified_shards
from spinlock.storage.rows import read_table, table_blocks
from spinlock.storage.shard import STRING_DATASETS, ShardInfo, inspect_shard


def arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v.dtype == b[k].dtype and np.array_equal(v, b[k], equal_nan=v.dtype.kind == "f"), k


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-shard run of 12 operators and its virtual dataset.h5."""
    out = tmp_path_factory.mktemp("merge_run")
    cfg = tiny_config()
    prepare_output(cfg, out)
    for spec in plan_shards(cfg):
        run_shard(cfg, spec, out)
    return cfg, out, arrays(merge_shards(cfg, out, "virtual"))


@pytest.fixture
def copy(run, tmp_path):
    cfg, out, _ = run
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    return cfg, dst


def test_string_datasets_are_the_str_rows_of_the_spec():
    assert STRING_DATASETS == tuple(p for p, _, dtype, *_ in SPEC if dtype == "str")


@pytest.mark.parametrize("mode", ["virtual", "copy"])
@pytest.mark.parametrize(("value", "message"), [
    (0, r"missing \[4\] \(1\), duplicated \[0\] \(1\), out of range \[\]"),  # shard 1 holds 4..7
    (99, r"missing \[4\] \(1\), duplicated \[\] \(0\), out of range \[99\]"),
])
def test_index_twice_missing_or_out_of_range_is_refused(copy, mode, value, message):
    cfg, out = copy
    before = (out / DATASET_FILE).stat().st_mtime_ns
    with h5py.File(shard_path(out, 1), "r+") as f:
        f["operators/index"][0] = value
    with pytest.raises(DataError, match=r"not a permutation of 0\.\.11: " + message):
        merge_shards(cfg, out, mode)
    assert (out / DATASET_FILE).stat().st_mtime_ns == before  # nothing written
    assert not (out / (DATASET_FILE + ".tmp")).exists()


def test_corrupt_partial_and_foreign_shards_are_named_before_merge(copy):
    cfg, out = copy
    with open(shard_path(out, 0), "r+b") as fh:
        fh.truncate(1000)
    with h5py.File(shard_path(out, 1), "r+") as f:
        del f["status"]
        f.create_dataset("status", (3,), np.int8)
    with h5py.File(shard_path(out, 2), "r+") as f:
        f.attrs["config_hash"] = "0123456789abcdef"
    with pytest.raises(DataError, match=(
        r"merge: 3 shard\(s\) not complete: shard-00000\.h5 \(corrupt: .+\), "
        r"shard-00001\.h5 \(corrupt: status has 3 rows, expected 4\), "
        r"shard-00002\.h5 \(mismatch: config hash 0123456789abcdef != [0-9a-f]{16}\)"
    )):
        merge_shards(cfg, out)


@pytest.mark.parametrize("damage", ["not complete", "no labels", "labels rows", "index dtype", "tmp only"])
def test_inspect_shard_states(copy, damage):
    _, out = copy
    path = shard_path(out, 1)
    with h5py.File(path, "r+") as f:
        chash = f.attrs["config_hash"]
        if damage == "not complete":
            f.attrs["complete"] = False
        elif damage == "no labels":
            del f["ics/params"]
        elif damage == "labels rows":
            del f["ics/type"]
            f.create_dataset("ics/type", (5,), h5py.string_dtype())
        elif damage == "index dtype":
            del f["operators/index"]
            f["operators/index"] = np.arange(4, 8, dtype=np.float64)
    if damage == "tmp only":
        os.replace(path, path.with_name(path.name + ".tmp"))
    state = inspect_shard(path, chash)
    assert isinstance(state, str)
    expected = {"not complete": "corrupt: not marked complete", "tmp only": "partial",
                "labels rows": "corrupt: ics/type has shape (5,), expected (4,)"}
    assert state.startswith(expected.get(damage, "corrupt: ")), state
    assert inspect_shard(path, chash, labels=False) == state  # the same verdict without reading the labels


def test_inspect_shard_reads_what_the_high_level_api_reads(run):
    cfg, out, _ = run
    path = shard_path(out, 1)
    info = inspect_shard(path, merge_mod.config_hash(cfg))
    assert isinstance(info, ShardInfo) and info.rows == 4 and info.unchanged()
    with h5py.File(path, "r") as f:
        assert np.array_equal(info.index, f["operators/index"][()])
        for name in STRING_DATASETS:
            want = f[name][()]
            assert info.labels[name].dtype == want.dtype and info.labels[name].tolist() == want.tolist()


def test_merge_reuses_the_resume_scan_and_rechecks_changed_files(run, copy, monkeypatch):
    cfg, out = copy
    infos: dict[int, ShardInfo] = {}
    done, todo = pending_shards(cfg, out, infos=infos)
    assert not todo and sorted(infos) == [s.shard_id for s in done]

    def no_open(*a, **k):
        raise AssertionError("a shard verified by the scan was opened again")

    with monkeypatch.context() as m:
        m.setattr(merge_mod, "inspect_shard", no_open)
        assert_same(arrays(merge_shards(cfg, out, "virtual", shards=infos)), run[2])
        assert_same(arrays(merge_shards(cfg, out, "copy", shards=infos)), run[2])
    # replaced after the scan (new inode), then truncated (new size): verified again, and refused
    other = out / "other.h5"
    shutil.copyfile(shard_path(out, 2), other)
    with h5py.File(other, "r+") as f:
        f.attrs["complete"] = False
    os.replace(other, shard_path(out, 2))
    with open(shard_path(out, 0), "r+b") as fh:
        fh.truncate(1000)
    assert not infos[0].unchanged() and not infos[2].unchanged() and infos[1].unchanged()
    with pytest.raises(DataError, match=r"2 shard\(s\) not complete: shard-00000\.h5 \(corrupt: .*"
                                        r"shard-00002\.h5 \(corrupt: not marked complete\)"):
        merge_shards(cfg, out, shards=infos)


def test_virtual_mappings_equal_the_high_level_construction(run, tmp_path):
    """The low-level layout writes the mappings ``layout[a:b] = VirtualSource(...)`` writes."""
    cfg, out, _ = run
    infos = verified_shards(cfg, out)
    ds_path = out / DATASET_FILE
    ref_path = out / "reference.h5"
    with h5py.File(ds_path, "r") as g, h5py.File(ref_path, "w") as ref:
        names = []
        g.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.is_virtual else None)
        assert set(names) >= {"trajectories", "ics/fields", "features/temporal", "operators/index"}
        for name in names:
            layout = h5py.VirtualLayout(shape=g[name].shape, dtype=g[name].dtype)
            start = 0
            for spec, info in zip(plan_shards(cfg), infos, strict=True):
                rel = f"shards/shard-{spec.shard_id:05d}.h5"
                layout[start : start + info.rows] = h5py.VirtualSource(rel, name, shape=(info.rows, *g[name].shape[1:]))
                start += info.rows
            ref.create_virtual_dataset(name, layout, fillvalue=None)
    with h5py.File(ds_path, "r") as g, h5py.File(ref_path, "r") as ref:
        for name in names:
            def maps(ds):
                return [(v.file_name, v.dset_name, v.vspace.get_select_type(), v.vspace.get_regular_hyperslab(),
                         v.src_space.get_select_type()) for v in ds.virtual_sources()]
            assert maps(g[name]) == maps(ref[name]) and len(maps(g[name])) == 3, name
            assert g[name].id.get_create_plist().get_layout() == ref[name].id.get_create_plist().get_layout()


def _shard_files_open() -> int:
    """Shard files this process holds open (HDF5 keeps a virtual dataset's sources open until it closes)."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if "/shards/shard-" in os.path.realpath(fd))


@pytest.mark.parametrize("mode", ["virtual", "copy"])
def test_read_table_equals_the_merged_arrays_one_shard_file_at_a_time(run, copy, mode, monkeypatch):
    """Whole, sampled and column reads give the arrays HDF5 reads through the merge, bit for bit, opening
    at most one shard file at a time and leaving none open (a read through a virtual dataset leaves every
    source it touched open until the dataset closes)."""
    cfg, out = copy
    merge_shards(cfg, out, mode)
    merged = run[2]
    opened_with_others = []
    real_file = h5py.File

    def spy(*a, **k):
        opened_with_others.append(_shard_files_open())
        return real_file(*a, **k)

    rows = np.array([0, 3, 4, 9, 11])  # spans all three shards (4 operators each)
    with h5py.File(out / DATASET_FILE, "r") as f:
        names = [n for n in merged if n not in (*STRING_DATASETS, *dims.SCALE_PATHS) and f[n].shape[:1] == (12,)]
        assert {"trajectories", "features/summary", "status", "operators/index"} <= set(names)
        with monkeypatch.context() as m:
            m.setattr(rows_mod.h5py, "File", spy)
            for name in names:
                ds = f[name]
                assert ds.is_virtual == (mode == "virtual"), name
                want = merged[name]
                for got, ref in [(read_table(ds), want), (read_table(ds, rows), want[rows]),
                                 (read_table(ds, rows[1:2]), want[3:4]), (read_table(ds, rows[:0]), want[:0])]:
                    assert got.dtype == ref.dtype and got.shape == ref.shape, name
                    assert np.array_equal(got, ref, equal_nan=ref.dtype.kind == "f"), name
                if ds.ndim > 1 and ds.shape[1] > 2:
                    cols = [0, ds.shape[1] - 1]
                    assert np.array_equal(read_table(ds, rows, cols), want[rows][:, cols], equal_nan=True), name
                    assert np.array_equal(read_table(ds, cols=cols), want[:, cols], equal_nan=True), name
                blocks = list(table_blocks(ds))
                assert [a for a, _ in blocks] == ([0, 4, 8] if mode == "virtual" else [0])
                assert np.array_equal(np.concatenate([b for _, b in blocks]), want, equal_nan=True), name
                assert _shard_files_open() == 0, name  # none left open while the merged dataset is
    assert set(opened_with_others) == ({0} if mode == "virtual" else set())  # copy: no source file to open


def test_read_table_names_a_missing_source(copy):
    cfg, out = copy
    merge_shards(cfg, out, "virtual")
    shard_path(out, 1).unlink()
    with h5py.File(out / DATASET_FILE, "r") as f:
        assert np.array_equal(read_table(f["status"], np.array([0, 1])), f["status"][:2])  # shard 0 only
        with pytest.raises(DataError, match=r"dataset\.h5:/status: cannot open its source .*shard-00001\.h5"):
            read_table(f["status"])


def test_ic_reader_reads_the_index_once_per_file_and_the_rows_by_shard(copy, monkeypatch):
    """The tokenize stage makes an ICReader per block: /operators/index is read once per process and file
    (again once the file changes), and the IC rows in any order come back as HDF5 reads them."""
    cfg, out = copy
    merge_shards(cfg, out, "virtual")
    path = out / DATASET_FILE
    with h5py.File(path, "r") as f:
        want, index = f["ics/fields"][()], f["operators/index"][()]
    calls = []
    real = icfields.read_table
    monkeypatch.setattr(icfields, "read_table", lambda ds, *a: calls.append(ds.name) or real(ds, *a))
    rows = np.array([11, 0, 5, 5, 4])
    for _ in range(3):
        reader = ICReader(path)
        assert np.array_equal(reader.read(index[rows]), want[rows])
        reader.close()
        assert _shard_files_open() == 0
    assert calls == ["/operators/index"] + ["/ics/fields"] * 3
    merge_shards(cfg, out, "copy")  # a new file at the same path
    reader = ICReader(path)
    assert np.array_equal(reader.read(index[rows]), want[rows])
    reader.close()
    assert calls[4:] == ["/operators/index", "/ics/fields"]


def test_virtual_mappings_are_listed_once_per_file_version(copy, monkeypatch):
    """Listing the mappings costs O(shards): a reader per block must not pay it per block."""
    cfg, out = copy
    listed = []
    real = h5py.Dataset.virtual_sources
    monkeypatch.setattr(h5py.Dataset, "virtual_sources", lambda ds: listed.append(ds.name) or real(ds))
    for _ in range(2):  # a new merge (a new file at the same path) is listed again
        merge_shards(cfg, out, "virtual")
        for _ in range(3):
            with h5py.File(out / DATASET_FILE, "r") as f:
                assert np.array_equal(read_table(f["status"], np.array([1, 9])), f["status"][[1, 9]])
    assert listed == ["/status", "/status"]

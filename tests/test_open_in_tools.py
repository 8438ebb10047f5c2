"""The data opens in the tools researchers use: xarray (HDF5 via h5netcdf, Zarr), pandas, and README's snippets."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter of the trajectories)
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from conftest import ROOT, tiny_config

from spinlock.config.loading import config_hash
from spinlock.encoding.layout import Position, TokenLayout
from spinlock.encoding.outputs import write_tokens
from spinlock.encoding.schema import FeatureSchema
from spinlock.errors import SpinlockError
from spinlock.generate import pending_shards, plan_shards, prepare_output, run_shard
from spinlock.storage import zarrstore
from spinlock.storage.checker import check_file
from spinlock.storage.dims import TRAJECTORY_DIMS
from spinlock.storage.layout import DATASET_FILE, shard_path
from spinlock.storage.merge import merge_shards

ZARR = {"storage.trajectories.format": "zarr"}


def array_of(cfg) -> zarrstore.TrajectoryArray:
    return zarrstore.TrajectoryArray.of(cfg.simulation, cfg.storage, config_hash(cfg))


def generate(cfg, out: Path, merge: str | None = None) -> Path:
    prepare_output(cfg, out)
    for spec in pending_shards(cfg, out)[1]:
        run_shard(cfg, spec, out)
    return merge_shards(cfg, out, merge)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """12 operators in 3 shards, HDF5 trajectories, virtual dataset.h5."""
    cfg = tiny_config()
    out = tmp_path_factory.mktemp("tools_run")
    return cfg, out, generate(cfg, out)


def open_tree(path: Path) -> xr.DataTree:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no phony dimensions, no decoding complaints
        return xr.open_datatree(path, engine="h5netcdf")


@pytest.mark.parametrize("mode", ["virtual", "copy"])
def test_dataset_h5_opens_in_xarray_with_named_dims(run, tmp_path, mode):
    cfg, out, ds = run
    if mode == "copy":
        shutil.copytree(out, tmp_path / "c")
        ds = merge_shards(cfg, tmp_path / "c", "copy")
    tree = open_tree(ds)
    traj = tree["trajectories"]
    assert traj.dims == TRAJECTORY_DIMS == ("operator", "realization", "time", "channel", "y", "x")
    assert traj.shape == (12, 2, 5, 3, 16, 16)
    assert tree["operator"].values.tolist() == list(range(12))
    assert tree["time"].values.tolist() == [0, 2, 4, 6, 8]
    params = tree["parameters/values"]
    assert params.dims == ("operator", "parameter") and params["parameter"].values.tolist() == list(cfg.parameters)
    assert tree["ics/fields"].dims == ("operator", "channel", "y", "x")
    temporal = tree["features/temporal"]
    assert temporal.dims == ("operator", "temporal_step", "temporal_feature")
    with h5py.File(ds, "r") as f:
        np.testing.assert_array_equal(traj.sel(operator=7, time=6).values, f["trajectories"][7, :, 3])
        assert params.sel(parameter="weight_scale").values.tolist() == \
            f["parameters/values"][:, list(cfg.parameters).index("weight_scale")].tolist()
        assert temporal["temporal_step"].values.tolist() == f["features/temporal"].attrs["steps"].tolist()
        for fam in ("initial", "architecture", "summary"):
            got = tree[f"features/{fam}"][f"{fam}_feature"].values.tolist()
            assert got == [str(n) for n in f[f"features/{fam}"].attrs["names"]], fam
    assert tree["ics/type"].dims == ("operator",) and tree["status"].dims == ("operator",)
    assert check_file(ds) == []


def test_shard_opens_with_its_global_operator_indices(run):
    _, out, _ = run
    shard = shard_path(out, 1)
    root = xr.open_dataset(shard, engine="h5netcdf")
    assert root["operator"].values.tolist() == [4, 5, 6, 7]
    assert root["trajectories"].dims == TRAJECTORY_DIMS
    feats = xr.open_dataset(shard, engine="h5netcdf", group="features")
    assert feats["summary"].dims == ("operator", "summary_feature")
    assert check_file(shard) == []


def test_tokens_get_named_dims_and_can_be_rewritten_with_another_width(run, tmp_path):
    _, out, _ = run
    shutil.copytree(out, tmp_path / "t")
    index = np.arange(12)[::-1]  # rows arrive in any order
    for cats in (["a", "b"], ["a", "b", "c"]):
        layout = TokenLayout(tuple(cats), tuple(Position(c, lv, 64) for c in cats for lv in (1, 2, 3)))
        tokens = np.arange(12 * 3 * len(cats), dtype=np.int32).reshape(12, -1) % 64
        write_tokens(tmp_path / "t", index, tokens, layout, np.ones((12, 28), np.float32))
    ds = tmp_path / "t" / DATASET_FILE
    assert check_file(ds) == []
    tree = open_tree(ds)
    assert tree["tokens"].dims == ("operator", "token")
    assert tree["token"].values.tolist() == layout.names
    assert tree["tokens"].sel(operator=11, token="c.l3").item() == 8  # row 0 of tokens was operator 11
    assert tree["features/initial_learned"].dims == ("operator", "initial_learned_feature")


def test_checker_names_a_dataset_without_dimension_scales(run, tmp_path):
    _, out, _ = run
    bad = tmp_path / "shard.h5"
    shutil.copy(shard_path(out, 0), bad)
    with h5py.File(bad, "r+") as f:
        f["status"].dims[0].detach_scale(f["operator"])
    assert check_file(bad) == ["status: dimension scales (None,), expected ('operator',)"]


def test_zarr_trajectories_open_in_xarray_with_named_dims(run, tmp_path):
    cfg = tiny_config(**ZARR)
    ds = generate(cfg, tmp_path / "z")
    loc = str(tmp_path / "z" / "trajectories.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated at merge: no "non-consolidated" warning
        traj = xr.open_zarr(loc)
    assert traj["trajectories"].dims == TRAJECTORY_DIMS and traj["time"].values.tolist() == [0, 2, 4, 6, 8]
    with h5py.File(run[2], "r") as f:  # the same values as the HDF5 run, bit for bit
        ref = f["trajectories"][()]
    assert np.array_equal(traj["trajectories"].values.view(np.uint32), ref.view(np.uint32))
    # a broken time coordinate is reported, and the next writer repairs it
    zarr.open_array(f"{loc}/time", mode="r+")[:] = 0
    assert check_file(ds) == ["trajectories.zarr/time: not the stored steps [0, 2, 4, 6, 8]"]
    zarrstore.open_for_write(array_of(cfg), tmp_path / "z")
    assert check_file(ds) == []


def test_bare_zarr_array_of_the_old_layout_is_refused_clearly(tmp_path):
    zarr.create_array(str(tmp_path / "trajectories.zarr"), shape=(1,), dtype="f4")
    with pytest.raises(SpinlockError, match=r"bare Zarr array written by an older Spinlock.*use a new --out"):
        zarrstore.open_for_write(array_of(tiny_config(**ZARR)), tmp_path)


def test_feature_tables_carry_the_sampled_parameters(run):
    cfg, out, ds = run
    df = pd.read_parquet(out / "features").sort_values("operator_index")
    with h5py.File(ds, "r") as f:
        values = f["parameters/values"][()]
        choices = json.loads(f["parameters/values"].attrs["choices"])
    for j, (name, spec) in enumerate(cfg.parameters.items()):
        col = df[f"param.{name}"]
        if spec.type == "choice":  # the value's text, categories in config order
            assert list(col.cat.categories) == [v if isinstance(v, str) else json.dumps(v) for v in spec.values]
            assert col.astype(str).tolist() == [str(choices[name][int(i)]) for i in values[:, j]], name
        elif spec.type == "boolean":
            assert col.dtype == bool and col.tolist() == (values[:, j] == 1).tolist(), name
        else:
            assert col.dtype == np.float64 and col.tolist() == values[:, j].tolist(), name
    means = df.groupby("param.activation", observed=True)["summary.spatial.mean.std"].mean()
    assert set(means.index) <= {"relu", "gelu", "tanh", "sin"} and len(means) >= 2
    schema, files = FeatureSchema.from_parquet_dir(out / "features")  # the tokenizer ignores the new columns
    assert not any(c.startswith("param.") for c in schema.scalar) and len(files) == len(plan_shards(cfg))


@pytest.mark.ray
def test_readme_python_blocks_run_after_the_quickstart(run, tmp_path):
    """README's python blocks, verbatim and in one namespace as a notebook runs them, against a small run at
    runs/quickstart (generated, not tokenized): the PyTorch dataset's open file must not stop xarray's.

    They run in a fresh interpreter, as a user's would. Run inside the test process they left it unable
    to start working Ray actors for later test modules (seen in the full suite; the blocks fork
    DataLoader workers and open files, the exact cause was not isolated)."""
    import os
    import subprocess
    import sys

    _, out, _ = run
    shutil.copytree(out, tmp_path / "runs" / "quickstart")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3 and all("runs/quickstart" in b for b in blocks)
    script = "import ray\nray.init(num_cpus=2, include_dashboard=False)\ntry:\n" + "".join(
        f"    exec(compile({b!r}, 'README.md python block {i}', 'exec'))\n" for i, b in enumerate(blocks)
    ) + "finally:\n    ray.shutdown()\n"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

"""Replay tells the truth: generating device/precision recorded, stored parameters checked, tolerance when
the replay cannot be bit-exact (issue 13 §5)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import tiny_config

from spinlock.cli.main import main
from spinlock.errors import SpinlockError
from spinlock.generate import pending_shards, prepare_output, run_shard
from spinlock.replay import STEP_RTOL, compare_with_stored, generation_of, replay_operator
from spinlock.storage.checker import check_file
from spinlock.storage.layout import shard_path
from spinlock.storage.merge import merge_shards

OP = 5  # operator 5: shard 1 (operators 4-7), batch row 1


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    cfg = tiny_config()
    out = tmp_path_factory.mktemp("replay_run")
    prepare_output(cfg, out)
    for spec in pending_shards(cfg, out)[1]:
        run_shard(cfg, spec, out)
    merge_shards(cfg, out)
    return out


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A copy of the run to tamper with (dataset.h5 is virtual: edits to a shard show through it)."""
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def replay_cli(path: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = main(["replay", str(path), "--operator", str(OP), *extra])
    return rc, capsys.readouterr().out


def column(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        return [str(x) for x in f["parameters/values"].attrs["names"]].index(name)


# --- the dataset records where and how it was generated ---------------------------------------------------


def test_shards_and_dataset_record_device_and_precision(run):
    for path in (shard_path(run, 0), shard_path(run, 2), run / "dataset.h5"):
        with h5py.File(path, "r") as f:
            assert (f.attrs["device"], f.attrs["precision"], f.attrs["format_version"]) == ("cpu", "fp32", "1.1")
        assert check_file(path) == []


def test_checker_validates_the_generation_attrs(run, tmp_path):
    bad = tmp_path / "bad.h5"
    shutil.copy(shard_path(run, 0), bad)
    with h5py.File(bad, "a") as f:
        f.attrs["device"] = "cpu+cuda"  # a shard runs on one device
        f.attrs["precision"] = "bf16"
    assert check_file(bad) == [
        "attrs/device is 'cpu+cuda', expected cpu or cuda",
        "attrs/precision is 'bf16' but attrs/config has simulation.precision 'fp32'",
    ]
    with h5py.File(bad, "a") as f:
        del f.attrs["device"]
    assert check_file(bad) == ["missing root attribute 'device' (recorded since format 1.1)"]
    with h5py.File(bad, "a") as f:  # a format 1.0 file predates the attrs: still conforming
        del f.attrs["precision"]
        f.attrs["format_version"] = "1.0"
    assert check_file(bad) == []


def test_merge_of_shards_from_two_devices_records_both_and_replay_reads_the_shard(copy):
    cfg = tiny_config()
    with h5py.File(shard_path(copy, 1), "a") as f:
        f.attrs["device"] = "cuda"  # as if a GPU worker had written shard 1
    merge_shards(cfg, copy)
    with h5py.File(copy / "dataset.h5", "r") as f:
        assert f.attrs["device"] == "cpu+cuda"
    assert check_file(copy / "dataset.h5") == []
    assert generation_of(copy, OP, cfg).device == "cuda"
    assert generation_of(copy, OP, cfg).source == "root attrs of shards/shard-00001.h5"
    assert generation_of(copy, 0, cfg).device == "cpu"


# --- replay ------------------------------------------------------------------------------------------------


def test_replay_of_a_correct_dataset_is_bit_exact(run, capsys):
    rc, out = replay_cli(run, capsys)
    assert rc == 0, out
    assert "on cpu in fp32, status 0" in out
    assert "comparison: bit-exact — generated on cpu in fp32 (root attrs of dataset.h5), replayed on cpu in fp32" in out
    assert "  parameters: ok — all 15 values and unit coordinates equal the rebuilt operator's" in out
    assert "  trajectory: ok — 5 stored steps bit-identical" in out
    assert out.rstrip().endswith("replay matches the stored record bit for bit")


def test_replay_names_each_tampered_parameter_with_stored_and_rebuilt_values(copy, capsys):
    j_depth, j_act, j_ws = (column(copy / "dataset.h5", n) for n in ("depth", "activation", "weight_scale"))
    with h5py.File(shard_path(copy, 1), "a") as f:
        v, u = f["parameters/values"], f["parameters/unit"]
        row_v, row_u = v[OP - 4], u[OP - 4]
        rebuilt = row_v.copy()  # the stored record is right until tampered with
        row_v[j_depth] = 5 - row_v[j_depth]  # depth 2 <-> 3
        row_v[j_act] = (row_v[j_act] + 1) % 4
        row_u[j_ws] += 1e-3
        v[OP - 4], u[OP - 4] = row_v, row_u
    acts = ["relu", "gelu", "tanh", "sin"]
    a0 = int(rebuilt[j_act])
    rc, out = replay_cli(copy, capsys)
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith("  parameters:"))
    assert line.startswith("  parameters: MISMATCH — 3 stored value(s) differ from the rebuilt operator: ")
    d0 = int(rebuilt[j_depth])
    assert f"depth: stored {5 - d0}, rebuilt {d0}" in line
    a1 = (a0 + 1) % 4
    assert f"activation: stored '{acts[a1]}' (choice {a1}), rebuilt '{acts[a0]}' (choice {a0})" in line
    assert re.search(r"weight_scale \(unit coordinate\): stored [0-9.]+, rebuilt [0-9.]+", line)
    # the rest of the record is right, and says so
    assert "  trajectory: ok — 5 stored steps bit-identical" in out
    assert out.rstrip().endswith("MISMATCH: the stored record differs from the replay (parameters)")


def fabricate_generation(path: Path, device: str, precision: str) -> None:
    """Set the generating device/precision (attrs and simulation.precision of the stored config) of
    dataset.h5 and every shard, as a run on another machine would have written them."""
    for p in [path / "dataset.h5", *sorted((path / "shards").glob("*.h5"))]:
        with h5py.File(p, "a") as f:
            f.attrs["device"], f.attrs["precision"] = device, precision
            assert "precision: fp32" in f.attrs["config"]
            f.attrs["config"] = f.attrs["config"].replace("precision: fp32", f"precision: {precision}")


@pytest.fixture
def fp32_only(monkeypatch):
    """This machine runs fp32 only (as CPUs did before CPU bf16 autocast): replay falls back to fp32."""
    import spinlock.replay

    def check_runnable(cfg, device=None):
        if cfg.simulation.precision != "fp32":
            raise SpinlockError(f"simulation.precision: {cfg.simulation.precision!r} not runnable here")

    monkeypatch.setattr(spinlock.replay, "check_runnable", check_runnable)


def scale_first_stored_step(path: Path, rel: float) -> None:
    """Scale operator OP's first stored step after the IC by 1 + rel: RMS(Δ)/RMS(stored) = rel / (1 + rel)."""
    with h5py.File(shard_path(path, 1), "a") as f:
        t = f["trajectories"]
        x = t[OP - 4]
        x[:, 1] *= 1 + rel
        t[OP - 4] = x


def test_replay_of_a_bf16_cuda_dataset_compares_within_the_stated_tolerance(copy, capsys, fp32_only):
    fabricate_generation(copy, "cuda", "bf16")
    scale_first_stored_step(copy, 0.02)  # a bf16-sized difference: bit-exact would call it a mismatch
    rc, out = replay_cli(copy, capsys, "--device", "cpu")
    assert rc == 0, out
    assert STEP_RTOL["bf16"] == 0.04
    assert ("comparison: tolerance — generated on cuda in bf16 (root attrs of dataset.h5), replayed on cpu in"
            " fp32: ") in out
    assert ("IC max|Δ| ≤ 0.0001, first stored step RMS(Δ)/RMS ≤ 0.04 (bf16) or 3 × the operator's spread,"
            " whichever is larger") in out
    m = re.search(r"  trajectory: ok — step 2: RMS\(Δ\)/RMS ([0-9.e-]+) ≤ 0.04 \(spread: an IC perturbed by 0.00391"
                  r" relative moves ([0-9.e-]+)\); over all 5 stored steps max [0-9.e-]+; bit-identical: no", out)
    assert m, out
    assert 0 < float(m.group(2)) < 0.04 / 3  # this operator is not sensitive: the fixed tolerance applies
    assert float(m.group(1)) == pytest.approx(0.02 / 1.02, rel=1e-3)  # relative to the stored RMS
    assert "  ic: ok — max|Δ| 0 ≤ 0.0001" in out
    assert out.rstrip().endswith("replay matches the stored record within tolerance")


def test_tolerance_comparison_still_catches_a_wrong_trajectory(copy, capsys):
    fabricate_generation(copy, "cuda", "fp32")
    scale_first_stored_step(copy, 0.05)
    rc, out = replay_cli(copy, capsys, "--device", "cpu")
    assert rc == 1
    assert "first stored step RMS(Δ)/RMS ≤ 0.01 (fp32)" in out
    m = re.search(r"  trajectory: MISMATCH — step 2: RMS\(Δ\)/RMS ([0-9.e-]+) > 0.01 \(spread: ", out)
    assert m and float(m.group(1)) == pytest.approx(0.05 / 1.05, rel=1e-3), out
    assert out.rstrip().endswith("MISMATCH: the stored record differs from the replay (trajectory)")


def test_a_format_1_0_dataset_replays_with_what_its_config_tells(copy, capsys):
    for p in [copy / "dataset.h5", *sorted((copy / "shards").glob("*.h5"))]:
        with h5py.File(p, "a") as f:
            del f.attrs["device"], f.attrs["precision"]
            f.attrs["format_version"] = "1.0"
    rc, out = replay_cli(copy, capsys)
    assert rc == 0, out
    # simulation.device auto in fp32: the generating device is unknown, so the comparison is a tolerance one
    assert ("comparison: tolerance — generated on an unrecorded device in fp32 (dataset.h5 predates the"
            " device/precision attrs (format 1.0): inferred from its config), replayed on cpu in fp32") in out
    assert "bit-identical: yes" in out


def test_the_tolerance_grows_with_the_operators_own_spread(copy, fp32_only):
    """A sensitive operator (rounding-sized IC changes grow to 10% by the first stored step) is held to
    3 × 0.1, not to the fixed 0.04: a 17% difference passes, and fails without the spread."""
    fabricate_generation(copy, "cuda", "bf16")
    scale_first_stored_step(copy, 0.2)
    rep = replay_operator(copy, OP, "cpu")
    assert compare_with_stored(copy, rep).mode == "tolerance"  # makes the spread run
    assert rep.spread is not None and rep.spread.shape == rep.trajectory.shape
    assert not np.array_equal(rep.spread, rep.trajectory)
    rep.spread = rep.trajectory.copy()
    rep.spread[:, 2] *= 1.1  # stride 2: stored step 1 is step 2
    cmp = compare_with_stored(copy, rep)
    assert cmp.mode == "tolerance" and cmp.ok, cmp
    assert cmp.check("trajectory").detail.startswith(
        "step 2: RMS(Δ)/RMS 0.167 ≤ 0.3 (spread: an IC perturbed by 0.00391 relative moves 0.1)")
    rep.spread = rep.trajectory  # an insensitive operator: the fixed tolerance
    assert not compare_with_stored(copy, rep).ok

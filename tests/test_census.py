"""Behaviour census: planted rollouts through the real FeatureObserver land in their class; thresholds,
the M/(M-1) correction and undecidable inputs on synthetic columns; info, Parquet and report agree."""

from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT, tiny_config

from spinlock.config import config_from_dict
from spinlock.features import FeatureObserver
from spinlock.features import census as cs
from spinlock.storage.layout import parquet_path, shard_path
from spinlock.storage.reader import describe, read_census

B, M, C, N, T = 8, 2, 2, 16, 16


class _Identity:
    def apply(self, x: torch.Tensor, step: int, exact: bool = False) -> torch.Tensor:
        return x

    def advance(self, x: torch.Tensor, step: int) -> torch.Tensor:  # pragma: no cover - protocol only
        return x


def _smooth(rng: np.random.Generator, shape) -> torch.Tensor:
    """Unit-std fields whose power sits at |k| ≲ 3 (resolved, large-scale)."""
    x = torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32)
    k = torch.sqrt(torch.fft.fftfreq(N, 1 / N)[:, None] ** 2 + torch.fft.rfftfreq(N, 1 / N)[None, :] ** 2)
    y = torch.fft.irfft2(torch.fft.rfft2(x) * torch.exp(-k / 1.5), s=(N, N))
    return (y - y.mean((-2, -1), keepdim=True)) / y.std((-2, -1), keepdim=True)


PLANTED = {
    # row: (expected class, state at step t [M, C, N, N])
    0: "structured",  # a smooth field drifting one cell every 4 steps, identical in both realizations
    1: "grid_scale",  # a checkerboard with a faint smooth component, identical in both realizations
    2: "noise_dominated",  # white noise drawn afresh per realization and step
    3: "noise_dominated",  # smooth fields drawn per realization: the rule reads the spread, not the spectrum
    4: "collapsed",  # a smooth field decaying by half per step (σ ≈ 1.5e-5 at T = 16)
    5: "collapsed",  # 100 + a unit-std smooth field: σ is 1 % of the amplitude
    6: "diverged",  # NaN from step 9 on, status 1
    7: "structured",  # a smooth field plus a little realization noise (φ ≈ 0.01)
}


def _planted_states() -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    base = _smooth(rng, (C, N, N))
    checker = torch.tensor((-1.0) ** np.add.outer(np.arange(N), np.arange(N)), dtype=torch.float32)
    states = []
    for t in range(T + 1):
        x = torch.empty(B, M, C, N, N)
        x[0] = torch.roll(base, t // 4, dims=-1)
        x[1] = checker + 0.2 * base
        x[2] = torch.as_tensor(rng.standard_normal((M, C, N, N)), dtype=torch.float32)
        x[3] = _smooth(rng, (M, C, N, N))
        x[4] = base * 0.5**t
        x[5] = 100.0 + base
        x[6] = base * 1.5**t
        x[7] = base + 0.1 * torch.as_tensor(rng.standard_normal((M, C, N, N)), dtype=torch.float32)
        states.append(x)
    return states


@pytest.fixture(scope="module")
def planted():
    cfg = config_from_dict({
        "simulation": {"num_operators": B, "grid": N, "channels": C, "steps": T, "realizations": M,
                       "batch_operators": B},
        "sharding": {"operators_per_shard": B},
        "storage": {"trajectories": {"stride": 1}},
        "features": {"field_stride": 2, "temporal_stride": 4, "sensitivity": {"probes": 4}},
    })
    states = _planted_states()
    obs = FeatureObserver(cfg, list(range(B)), torch.device("cpu"))
    obs.start(states[0], _Identity())
    alive = torch.ones(B, dtype=torch.bool)
    for t in range(1, T + 1):
        x = states[t].clone()
        if t >= 9:
            alive[6] = False
            x[6] = float("nan")
        obs.observe(t, x, alive.clone())
    status = torch.zeros(B, dtype=torch.int8)
    status[6] = 1
    obs.finish(status, torch.where(status > 0, 9, -1).int())
    block = obs.summary()
    return block.values, list(block.names), status.numpy()


def test_planted_rollouts_land_in_their_class(planted):
    values, names, status = planted
    codes = cs.classify(values, names, status, M)
    got = {row: cs.NAMES[c] for row, c in enumerate(codes)}
    assert got == PLANTED
    col = {n: values[:, j] for j, n in enumerate(names)}
    # the planted fields sit well inside their rules, not on a threshold
    assert col[cs.BAND4][1] > 0.9 and col[cs.BAND4][[0, 3, 7]].max() < 0.05
    phi = M / (M - 1) * 10.0 ** (2 * col[cs.SPREAD].astype(np.float64))
    assert abs(phi[2] - 1.0) < 0.1  # independent white realizations: φ = 1 up to sampling error
    assert 0.6 < phi[3] < 1.4  # independent smooth ones: few modes, so a noisier estimate of 1
    assert phi[0] < 1e-6 and phi[7] < 0.05


def _table(**cols: list[float]) -> tuple[np.ndarray, list[str]]:
    defaults = {cs.LOG_STD: 0.0, cs.LOG_ABSMAX: 0.5, cs.SPREAD: -3.0, cs.BAND4: 0.1}
    n = max(len(v) for v in cols.values())
    data = {k: cols.get(k, [v] * n) for k, v in defaults.items()}
    names = ["spatial.mean.mean", *data]  # an unrelated column first: columns are found by name
    return np.array([[7.0] * n, *data.values()], np.float32).T, names


def test_thresholds_are_the_documented_boundaries():
    # collapse: log σ - max(0, log max|x|) ≤ -1.5, absolute (max|x| ≤ 1) and relative (max|x| > 1)
    s, names = _table(**{cs.LOG_STD: [-1.5, -1.45, -0.5, -0.45], cs.LOG_ABSMAX: [-0.5, -0.5, 1.0, 1.0]})
    assert [cs.NAMES[c] for c in cs.classify(s, names, np.zeros(4), 2)] == [
        "collapsed", "structured", "collapsed", "structured"]
    # grid scale: band4 > 0.5 strictly
    s, names = _table(**{cs.BAND4: [0.5, 0.51]})
    assert [cs.NAMES[c] for c in cs.classify(s, names, np.zeros(2), 2)] == ["structured", "grid_scale"]
    # noise: φ = M/(M-1)·10^(2·spread) ≥ 0.5; the same spread is noise for M = 2, not for M = 3
    half = 0.5 * math.log10(0.25)  # φ = 0.5 exactly at M = 2
    s, names = _table(**{cs.SPREAD: [half + 1e-3, half - 1e-3, -0.25], cs.BAND4: [0.9, 0.9, 0.9]})
    assert [cs.NAMES[c] for c in cs.classify(s, names, np.zeros(3), 2)] == [
        "noise_dominated", "grid_scale", "noise_dominated"]
    assert cs.NAMES[cs.classify(s, names, np.zeros(3), 3)[2]] == "grid_scale"  # 1.5·10^-0.5 = 0.47
    # precedence: collapsed before noise before grid scale
    s, names = _table(**{cs.LOG_STD: [-3.0, 0.0], cs.SPREAD: [0.0, 0.0], cs.BAND4: [0.9, 0.9]})
    assert [cs.NAMES[c] for c in cs.classify(s, names, np.zeros(2), 2)] == ["collapsed", "noise_dominated"]


def test_status_nan_missing_columns_and_single_realization():
    s, names = _table(**{cs.BAND4: [0.9, np.nan, 0.2, 0.2, np.nan]})
    s[3:, 1:] = np.nan  # diverged / fault rows carry NaN features
    status = np.array([0, 0, 7, 1, 2])
    assert [cs.NAMES[c] for c in cs.classify(s, names, status, 2)] == [
        "grid_scale", "undetermined", "undetermined", "diverged", "fault"]
    # M = 1: spread is NaN by construction, the noise rule is not assessed (not undetermined) and says so
    s, names = _table(**{cs.SPREAD: [np.nan] * 2, cs.BAND4: [0.9, 0.1]})
    assert [cs.NAMES[c] for c in cs.classify(s, names, np.zeros(2), 1)] == ["grid_scale", "structured"]
    assert cs.rule_notes(names, 1) == ["noise_dominated not assessed (M = 1)"]
    # a category that was not extracted: its rule cannot decide, so the ok operators reaching it are undetermined
    keep = [j for j, n in enumerate(names) if n != cs.BAND4]
    s2, names2 = s[:, keep], [names[j] for j in keep]
    assert [cs.NAMES[c] for c in cs.classify(s2, names2, np.zeros(2), 2)] == ["undetermined"] * 2
    assert cs.rule_notes(names2, 2) == [f"grid_scale undecidable: no summary column {cs.BAND4}"]
    with pytest.raises(ValueError, match="rows"):
        cs.classify(s, names, np.zeros(3), 2)


def test_counts_and_codes_are_stable():
    assert cs.NAMES == ("fault", "diverged", "undetermined", "collapsed", "noise_dominated", "grid_scale",
                        "structured")
    codes = np.array([6, 6, 5, 1, 3], np.int8)
    c = cs.counts(codes)
    assert list(c) == list(cs.NAMES) and sum(c.values()) == 5 and c["structured"] == 2
    assert cs.format_counts(codes) == (
        "structured 2 (40.0 %), diverged 1 (20.0 %), collapsed 1 (20.0 %), grid_scale 1 (20.0 %)")


def test_docs_state_every_class_and_threshold():
    doc = (ROOT / "docs" / "features.md").read_text()
    section = doc[doc.index("## Behaviour census"):]
    for c in cs.CLASSES:
        assert f"`{c.name}`" in section
    for value in (cs.COLLAPSE_LOG_RATIO, cs.NOISE_FRACTION, cs.GRID_SCALE_FRACTION):
        assert str(value) in section
    fmt = (ROOT / "docs" / "dataset-format.md").read_text()
    assert "`census`" in fmt


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from spinlock.generate import pending_shards, prepare_output, run_shard
    from spinlock.storage.merge import merge_shards

    out = tmp_path_factory.mktemp("census_run")
    cfg = tiny_config()
    prepare_output(cfg, out)
    _, todo = pending_shards(cfg, out)
    for spec in todo:
        run_shard(cfg, spec, out)
    return cfg, out, merge_shards(cfg, out, None), todo


def test_info_parquet_and_report_agree(tiny_run):
    cfg, out, ds, shards = tiny_run
    with h5py.File(ds, "r") as f:
        codes, notes = read_census(f)
        names = [str(x) for x in f["features/summary"].attrs["names"]]
        direct = cs.classify(f["features/summary"][()], names, f["status"][()], cfg.simulation.realizations)
        index = f["operators/index"][()]
    assert notes == [] and np.array_equal(codes, direct)
    text = describe(out)
    line = next(x for x in text.splitlines() if x.strip().startswith("census:"))
    shown = {k: int(v) for k, v in re.findall(r"(\w+) (\d+) \(", line)}
    assert shown == {k: v for k, v in cs.counts(codes).items() if v}
    assert line.split(": ", 1)[1] == cs.format_counts(codes)
    got = {}
    for spec in shards:
        table = pq.read_table(parquet_path(out, spec.shard_id), columns=["operator_index", "census"])
        got.update(zip(table["operator_index"].to_pylist(), table["census"].to_pylist(), strict=True))
        with h5py.File(shard_path(out, spec.shard_id), "r") as f:
            assert [cs.NAMES[c] for c in read_census(f)[0]] == table["census"].to_pylist()
    assert [got[int(i)] for i in index] == [cs.NAMES[c] for c in codes]

    from spinlock.viz.report import census_section
    from spinlock.viz.rundata import RunData

    rep = Path(out) / "report-census"
    rep.mkdir()
    sec = census_section(RunData(out), rep, seed=0)
    assert sum(int(v.split()[0]) for _, v in sec.table) == len(codes)
    assert [p.path.name for p in sec.plots] == ["census.png", "census-examples.png"]
    for plot in sec.plots:
        assert iio.imread(plot.path)[..., :3].astype(float).var() > 0


def test_parameter_bins_and_mutual_information(tiny_run, monkeypatch):
    from spinlock.viz import census_plots
    from spinlock.viz.census_plots import mutual_information, parameter_bins

    cfg, out, ds, _ = tiny_run
    with h5py.File(ds, "r") as f:
        specs = {k: v.model_dump() for k, v in cfg.parameters.items()}
        bins = {p.name: p for p in parameter_bins(f, specs)}
        n = f["parameters/values"].shape[0]
        monkeypatch.setattr(census_plots, "PARAMETER_GROUP_BYTES", 2 * 8 * n)  # two columns per read
        assert [(p.name, p.labels, p.bin.tolist()) for p in parameter_bins(f, specs)] == \
            [(p.name, p.labels, p.bin.tolist()) for p in bins.values()]
        values = f["parameters/values"][()]
        pnames = [str(x) for x in f["parameters/values"].attrs["names"]]
    assert "padding_mode" not in bins  # a single value: nothing to break down
    act = bins["activation"]
    assert act.labels == ["relu", "gelu", "tanh", "sin"]
    assert np.array_equal(act.bin, values[:, pnames.index("activation")].astype(int))
    ws = bins["weight_scale"]  # continuous, log scale [0.5, 2]: quarters of the Sobol coordinate
    assert len(ws.labels) == 4 and (ws.bin >= 0).all()
    v = values[:, pnames.index("weight_scale")]
    for k in range(4):
        inside = v[ws.bin == k]
        assert ((inside >= 0.5 * 4 ** (k / 4) - 1e-9) & (inside <= 0.5 * 4 ** ((k + 1) / 4) + 1e-9)).all()
    # MI: a bin equal to the class carries H(class) bits; a constant bin carries none
    codes = np.array([3, 3, 6, 6, 5, 5, 5, 5])
    assert mutual_information(codes, codes.astype(np.int64)) == pytest.approx(1.5)
    assert mutual_information(codes, np.zeros(8, np.int64)) == pytest.approx(0.0)

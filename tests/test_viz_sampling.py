"""Figures read a bounded, seeded sample of the operators, only those rows, and say so."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from synthetic_run import make_run

from spinlock.storage import rows as rows_mod
from spinlock.storage.rows import read_table, table_blocks
from spinlock.viz import rundata
from spinlock.viz.report import features_section
from spinlock.viz.rundata import RunData


def test_read_table_reads_only_the_rows_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_mod, "READ_BLOCK_BYTES", 3 * 2 * 5 * 4)  # 3 rows of [2, 5] float32 per block
    data = np.arange(40 * 2 * 5, dtype=np.float32).reshape(40, 2, 5)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        ds = f.create_dataset("x", data=data)
        for rows in ([0], [39], [1, 2, 3, 4, 17, 18, 39], list(range(40)), []):
            assert np.array_equal(read_table(ds, np.array(rows, np.int64)), data[rows])
            assert np.array_equal(read_table(ds, np.array(rows, np.int64), [1]), data[rows][:, [1]])
        assert np.array_equal(read_table(ds, None), data)
        assert [a for a, _ in table_blocks(ds)] == list(range(0, 40, 3))
        monkeypatch.setattr(rows_mod, "READ_BLOCK_BYTES", 3 * 5 * 4)  # one column: 3 rows per block again
        assert [(a, b.shape) for a, b in table_blocks(ds, [0])][-1] == (39, (1, 1, 5))
        for bad in ([3, 1], [1, 1], [-1], [40]):
            with pytest.raises(ValueError, match="sorted, unique"):
                read_table(ds, np.array(bad))


def test_plot_rows_are_a_bounded_deterministic_sample_of_the_ok_rows(tmp_path):
    syn = make_run(tmp_path / "run", n=30, m=1, steps=2, store_trajectories=False, diverged=(4, 11))
    run = RunData(syn.out)
    ok = run.ok_rows
    assert ok.size == 28 and np.array_equal(run.plot_rows(), ok)  # under the limit: every ok row
    a = run.plot_rows(limit=10)
    assert a.size == 10 and np.all(np.diff(a) > 0) and np.isin(a, ok).all()
    assert np.array_equal(a, RunData(syn.out).plot_rows(limit=10))  # the same rows on every read
    assert not np.array_equal(a, ok[:10]) and not np.array_equal(a, ok[-10:])  # spread, not a prefix
    table = run.features("summary", a)
    assert np.array_equal(table.values, run.features("summary").values[a])
    assert np.array_equal(run.temporal(a).values, run.temporal().values[a], equal_nan=True)


def test_feature_figures_say_they_show_a_sample(tmp_path, monkeypatch):
    syn = make_run(tmp_path / "run", n=12, m=1, steps=2, store_trajectories=False)
    run = RunData(syn.out)
    whole = features_section(run, tmp_path)
    assert "all 11 ok operators" in whole.lines[0] and "sample" not in " ".join(p.caption for p in whole.plots)
    monkeypatch.setattr(rundata, "MAX_PLOT_OPERATORS", 5)
    section = features_section(run, tmp_path)
    assert "a sample of 5 of the 11 ok operators" in section.lines[0]
    assert section.plots and all("a sample of 5 of the 11 ok operators" in p.caption for p in section.plots)


def test_distribution_figure_titles_name_the_sample():
    from spinlock.viz import feature_plots as fp

    values = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    fig = fp.plot_distributions(values, ["a", "b", "c"], "summary features", total=11)
    assert "sample of 5 of 11 operators" in fig._suptitle.get_text()
    fig = fp.plot_temporal(values[:, :, None], ["a"], np.arange(3), total=5)
    assert "N=5" in fig._suptitle.get_text()

"""Run-directory access (stored vs replayed rollouts) and operator selection rules."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from synthetic_run import fake_replay, make_run, rollout

from spinlock.errors import DataError, SpinlockError
from spinlock.viz import select
from spinlock.viz.rundata import RunData


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), n=12, m=3, steps=8, stride=2)


def test_run_data_metadata(run_dir):
    run = RunData(run_dir.out)
    assert run.n == 12 and run.realizations == 3 and run.channels == 3 and run.simulation_steps == 8
    assert run.stored_steps.tolist() == [0, 2, 4, 6, 8] and run.stored_stride == 2
    assert run.feature_widths == {"initial": 3, "architecture": 2, "summary": 6, "temporal": 2}
    assert run.ok_rows.tolist() == [i for i in range(12) if i != 4]
    assert run.ic_type_counts() == {"sine": 4, "cosine": 4, "noise": 4}
    tok = run.tokens()
    assert tok.codes.shape == (12, 2, 3) and tok.categories == ["amplitude", "structure"]
    np.testing.assert_array_equal(tok.codes[:, 0, 0], run_dir.k - 1)
    assert [c.name for c in run.categories()] == ["amplitude", "structure"]
    assert len(run.metrics()) == 6
    assert RunData(run_dir.out / "dataset.h5").n == 12
    with pytest.raises(DataError, match="no dataset"):
        RunData(run_dir.out / "missing")


def test_stored_trajectory_matches_closed_form(run_dir):
    run = RunData(run_dir.out)
    steps = run.frame_steps(6, 4)
    assert steps.tolist() == [0, 4]
    got = run.trajectory(5, steps, [2, 0])
    want = rollout(5, 0, 3, 8, 3, 16, None)[[2, 0]][:, [0, 4]]
    np.testing.assert_array_equal(got, want)
    assert run.frame_steps().tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(SpinlockError, match="multiple of the stored stride 2"):
        run.frame_steps(None, 3)
    with pytest.raises(SpinlockError, match="out of range"):
        run.frame_steps(9)
    with pytest.raises(SpinlockError, match="not stored"):
        run.trajectory(0, [1])
    with pytest.raises(SpinlockError, match="realizations"):
        run.trajectory(0, [0], [3])


def test_replay_when_trajectories_not_stored(tmp_path, monkeypatch):
    syn = make_run(tmp_path / "r", n=6, m=2, steps=6, store_trajectories=False)
    run = RunData(syn.out)
    assert run.stored_steps is None and run.realizations == 2
    fake = types.ModuleType("spinlock.replay")
    fake.replay_operator = fake_replay(syn)
    monkeypatch.setitem(sys.modules, "spinlock.replay", fake)
    assert run.frame_steps(None, 3).tolist() == [0, 3, 6]  # any stride when replaying
    np.testing.assert_array_equal(run.trajectory(3, [1, 5], [1]), rollout(3, 0, 2, 6, 3, 16, None)[[1]][:, [1, 5]])


def test_random_selection_is_seeded_and_skips_diverged(run_dir):
    run = RunData(run_dir.out)
    a = select.random_group(run, 5, seed=3)
    assert a == select.random_group(run, 5, seed=3)
    assert a.rows != select.random_group(run, 5, seed=4).rows
    assert len(set(a.rows)) == 5 and 4 not in a.rows
    assert select.random_group(run, 100, seed=0).rows == run.ok_rows.tolist()
    assert select.explicit(run, [7, 2]).rows == [7, 2]
    with pytest.raises(SpinlockError, match=r"operator\(s\) \[99\]"):
        select.explicit(run, [2, 99])


def test_per_token_picks_one_medoid_per_coarse_code(run_dir):
    run = RunData(run_dir.out)
    tok = run.tokens()
    g = select.per_token(run, tok, "amplitude")
    codes = tok.codes[:, 0, 0]
    assert [int(codes[r]) for r in g.rows] == sorted(set(codes.tolist()))
    assert all(run.status[r] == 0 for r in g.rows)
    assert g.labels[0].endswith(f"(n={int((codes == codes[g.rows[0]]).sum())})")
    assert select.per_token(run, tok, 1).rows == select.per_category(run, tok)[1].rows
    with pytest.raises(SpinlockError, match="unknown token category 'nope'"):
        select.per_token(run, tok, "nope")


def test_farthest_points_and_tightest_group_geometry():
    square = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5], [5.2, 5], [5, 5.3], [4.9, 5.1]], float) - 5
    picked = select._farthest_points(square, 4)
    assert sorted(picked) == [0, 1, 2, 3]
    tight = select._tightest_group(square, 4)
    assert sorted(tight) == [4, 5, 6, 7]


def test_robust_standardize_drops_bad_columns():
    x = np.column_stack(
        [
            np.arange(10.0),
            np.full(10, 2.0),
            np.r_[np.full(5, np.nan), np.arange(5.0)],
            np.r_[np.arange(9.0), 1e9],
        ]
    )
    z = select.robust_standardize(x)
    assert z.shape == (10, 2)  # constant and mostly-NaN columns dropped
    assert np.abs(z).max() <= 10.0 and abs(np.median(z[:, 0])) < 1e-12


def test_diverse_selections(run_dir):
    run = RunData(run_dir.out)
    most = select.diverse(run, 3, most=True)
    least = select.diverse(run, 3, most=False)
    assert len(set(most.rows)) == 3 and len(set(least.rows)) == 3 and 4 not in most.rows + least.rows
    _, z = select.behaviour_matrix(run)
    pos = {r: i for i, r in enumerate(run.ok_rows.tolist())}

    def spread(rows):
        pts = z[[pos[r] for r in rows]]
        return np.mean([np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1 :]])

    assert spread(most.rows) > spread(least.rows)
    score = select.stochastic_spread(run)
    assert np.isnan(score[4]) and np.isfinite(np.delete(score, 4)).all()
    hi = select.diverse(run, 3, True, "realizations").rows
    lo = select.diverse(run, 3, False, "realizations").rows
    assert min(score[hi]) >= max(score[lo])
    assert hi == np.argsort(-np.nan_to_num(score, nan=-1))[:3].tolist()

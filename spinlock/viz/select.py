"""Which operators to render: explicit, seeded random, one per token, most / least diverse.

A selection is a list of :class:`Group` s; each group becomes one grid clip. Definitions:

* **behaviour space**: the summary features of the ok operators (status 0), robustly standardised per
  column (median, 1.4826·MAD; columns non-finite for > 10 % of operators or constant are dropped,
  remaining gaps set to the median). Falls back to all scalar families if there is no summary family.
  Beyond ``MAX_PLOT_OPERATORS`` (20 000) ok operators it holds the seeded sample of them that the figures
  use (:meth:`RunData.plot_rows`), so ``--per-token`` medoids and ``--most/--least-diverse`` are taken
  among those (bounded memory and time at any N).
* ``--random K``: K ok operators drawn without replacement from ``numpy_rng(seed, "viz.select.random")``.
* ``--per-token``: for one token category, one operator per distinct coarse (level-0) code: the
  *medoid* of the code's operators (the one nearest their mean in behaviour space). ``--per-category``
  does this for every category (one group each).
* ``--most-diverse K`` / ``--least-diverse K`` with ``--diversity features`` (default): the K operators
  most spread out in behaviour space (greedy farthest-point sampling, starting from the operator
  farthest from the median) / the K most alike (the operator whose K-1 nearest neighbours are closest
  on average, plus those neighbours).
* with ``--diversity realizations``: score each operator by its *stochastic spread*
  ``mean_{t,c,x} std_m u / std_{m,t,c,x} u`` (realization spread relative to the field's overall
  variation; needs stored trajectories and M ≥ 2) and take the K highest / lowest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.neighbors import NearestNeighbors

from spinlock.errors import SpinlockError
from spinlock.rng import numpy_rng
from spinlock.storage.layout import SCALAR_FAMILIES
from spinlock.viz.rundata import RunData, Tokens

Diversity = Literal["features", "realizations"]


@dataclass(frozen=True)
class Group:
    """Operators rendered together: ``rows`` (dataset rows) with one ``labels`` entry each."""

    name: str
    title: str
    rows: list[int]
    labels: list[str]


def op_label(run: RunData, row: int) -> str:
    return f"op {int(run.operator_index[row])}"


def robust_standardize(x: np.ndarray, max_missing: float = 0.1) -> np.ndarray:
    """[n, D] → [n, D'] robust z-scores clipped to ±10 (see the module docstring for dropped columns)."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    keep = finite.mean(axis=0) >= 1.0 - max_missing if x.shape[0] else np.zeros(x.shape[1], bool)
    x, finite = x[:, keep], finite[:, keep]
    xm = np.where(finite, x, np.nan)
    med = np.nanmedian(xm, axis=0) if x.shape[0] else np.zeros(x.shape[1])
    scale = 1.4826 * np.nanmedian(np.abs(xm - med), axis=0) if x.shape[0] else np.ones(x.shape[1])
    std = np.nanstd(xm, axis=0) if x.shape[0] else np.ones(x.shape[1])
    scale = np.where(scale > 0, scale, std)
    ok = scale > 0
    z = (np.where(finite, x, med) - med)[:, ok] / scale[ok]
    return np.clip(z, -10.0, 10.0)


def behaviour_matrix(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [n], Z [n, D'])``: behaviour-space coordinates of the ok operators (of the figures' sample
    of them beyond ``MAX_PLOT_OPERATORS``, see :meth:`RunData.plot_rows`)."""
    rows = run.plot_rows()
    tables = [run.features("summary", rows)]
    if tables[0] is None:
        tables = [run.features(f, rows) for f in SCALAR_FAMILIES]
    tables = [t for t in tables if t is not None]
    if not tables:
        raise SpinlockError(f"{run.dataset_path} has no scalar features to measure behaviour with")
    x = np.concatenate([t.values for t in tables], axis=1)
    z = robust_standardize(x)
    if z.shape[1] == 0 or rows.size == 0:
        raise SpinlockError(f"{run.dataset_path}: no usable feature column or no ok operator")
    return rows, z


def explicit(run: RunData, indices: Sequence[int]) -> Group:
    rows = run.rows_of(indices)
    return Group("operators", f"operators {', '.join(str(i) for i in indices)}", rows, [op_label(run, r) for r in rows])


def random_group(run: RunData, k: int, seed: int) -> Group:
    pool = run.ok_rows if run.ok_rows.size else np.arange(run.n)
    if k < 1:
        raise SpinlockError(f"--random needs K >= 1, got {k}")
    k = min(k, pool.size)
    rows = sorted(numpy_rng(seed, "viz.select.random").choice(pool, size=k, replace=False).tolist())
    return Group(f"random{k}-seed{seed}", f"{k} random operators (seed {seed})", rows, [op_label(run, r) for r in rows])


def _medoid(rows: np.ndarray, pos: dict[int, int], z: np.ndarray) -> int:
    """Row nearest the mean of ``rows`` in behaviour space (rows without coordinates: the first one)."""
    have = [r for r in rows.tolist() if r in pos]
    if not have:
        return int(rows[0])
    pts = z[[pos[r] for r in have]]
    return have[int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))]


def per_token(run: RunData, tokens: Tokens, category: str | int | None) -> Group:
    """One operator (the medoid) per coarse code of one category, codes in increasing order."""
    k = tokens.category_index(category)
    codes = tokens.codes[:, k, 0]
    try:
        zrows, z = behaviour_matrix(run)
    except SpinlockError:
        zrows, z = np.zeros(0, np.int64), np.zeros((0, 0))
    pos = {int(r): i for i, r in enumerate(zrows)}
    ok = run.status == 0
    rows, labels = [], []
    for code in np.unique(codes[codes >= 0]):
        members = np.flatnonzero((codes == code) & ok)
        members = members if members.size else np.flatnonzero(codes == code)
        r = _medoid(members, pos, z)
        rows.append(r)
        labels.append(f"{op_label(run, r)} · tok {int(code)} (n={int((codes == code).sum())})")
    name = tokens.categories[k]
    return Group(f"per-token-{_slug(name)}", f"one operator per coarse token of category '{name}'", rows, labels)


def per_category(run: RunData, tokens: Tokens) -> list[Group]:
    return [per_token(run, tokens, k) for k in range(len(tokens.categories))]


def diverse(run: RunData, k: int, most: bool, by: Diversity = "features") -> Group:
    """The K most (``most``) or least diverse operators, see the module docstring for definitions."""
    if k < 1:
        raise SpinlockError(f"--{'most' if most else 'least'}-diverse needs K >= 1, got {k}")
    word = "most" if most else "least"
    if by == "features":
        rows, z = behaviour_matrix(run)
        k = min(k, rows.size)
        picked = _farthest_points(z, k) if most else _tightest_group(z, k)
        sel = rows[picked]
        title = f"{k} {word} diverse operators (behaviour-space distance)"
    elif by == "realizations":
        score = stochastic_spread(run)
        valid = np.flatnonzero(np.isfinite(score))
        order = valid[np.argsort(score[valid], kind="stable")]
        sel = order[::-1][:k] if most else order[:k]
        title = f"{len(sel)} operators with the {'largest' if most else 'smallest'} realization spread"
    else:
        raise SpinlockError(f"unknown diversity measure {by!r}; expected 'features' or 'realizations'")
    sel = [int(r) for r in sel]
    return Group(f"{word}-diverse{len(sel)}-{by}", title, sel, [op_label(run, r) for r in sel])


def _farthest_points(z: np.ndarray, k: int) -> list[int]:
    """Greedy farthest-point sampling from the point farthest from the origin (= the median)."""
    first = int(np.argmax((z**2).sum(axis=1)))
    picked = [first]
    d = np.sqrt(((z - z[first]) ** 2).sum(axis=1))
    for _ in range(k - 1):
        nxt = int(np.argmax(d))
        picked.append(nxt)
        d = np.minimum(d, np.sqrt(((z - z[nxt]) ** 2).sum(axis=1)))
    return picked


def _tightest_group(z: np.ndarray, k: int) -> list[int]:
    """The point whose k-1 nearest neighbours have the smallest mean distance, with those neighbours."""
    nn = NearestNeighbors(n_neighbors=k).fit(z)
    dist, idx = nn.kneighbors(z)
    centre = int(np.argmin(dist[:, 1:].mean(axis=1))) if k > 1 else 0
    # the query point is its own nearest neighbour except with duplicates; keep it first, drop repeats
    out = [centre] + [int(i) for i in idx[centre] if int(i) != centre]
    return out[:k]


def stochastic_spread(run: RunData) -> np.ndarray:
    """[N] ``mean_{t,c,x} std_m u / std u`` from stored trajectories (NaN for diverged operators)."""
    if run.stored_steps is None:
        raise SpinlockError("--diversity realizations needs stored trajectories (storage.trajectories.store)")
    if (run.realizations or 1) < 2:
        raise SpinlockError("--diversity realizations needs at least 2 realizations per operator")
    score = np.full(run.n, np.nan)
    for r in range(run.n):
        u = run.trajectory(r, run.stored_steps)
        if not np.isfinite(u).all():
            continue
        total = float(u.std())
        score[r] = float(u.std(axis=0).mean()) / total if total > 0 else 0.0
    return score


def _slug(s: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in s.strip())
    return out.strip("-") or "category"

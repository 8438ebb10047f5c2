"""Feature audits: flag degenerate columns of features computed on real operators.

The features come from ``spinlock.generate.run_operators`` (operators rolled out as a shard would, nothing
written). ``python bench/features.py --audit N`` uses these to check that no SUMMARY column is constant by
construction (the acceptance bar is <= 2 % near-constant columns on the quickstart dataset), and
``tests/test_features_audit.py`` asserts :func:`dead_columns` is empty at several run lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def near_constant_columns(
    values: np.ndarray, names: Sequence[str], rel_tol: float = 1e-6, mode_fraction: float = 0.99
) -> list[tuple[str, str]]:
    """Columns of ``values`` [N, D] that carry (almost) no information, with the reason.

    A column is flagged when it has no finite value, when its finite values have a standard deviation
    <= ``rel_tol`` · max(|mean|, 1e-12), or when one value (to 6 significant digits) holds at least
    ``mode_fraction`` of the finite rows.
    """
    flagged = []
    for j, name in enumerate(names):
        col = values[:, j].astype(np.float64)
        col = col[np.isfinite(col)]
        if col.size == 0:
            flagged.append((name, "no finite value"))
            continue
        std, mean = col.std(), abs(col.mean())
        if std <= rel_tol * max(mean, 1e-12):
            flagged.append((name, f"constant ({col[0]:.6g})"))
            continue
        _, counts = np.unique(np.round(col, 6 - int(np.floor(np.log10(max(abs(col).max(), 1e-300))))),
                              return_counts=True)
        if counts.max() >= mode_fraction * col.size:
            flagged.append((name, f"one value in {counts.max()}/{col.size} rows"))
    return flagged


def dead_columns(values: np.ndarray, names: Sequence[str]) -> list[tuple[str, str]]:
    """Columns of ``values`` [N, D] (or [N, T', D], flattened over steps) that carry no information.

    A column is dead when it has no finite value, when its non-NaN values are all equal, or when it is
    exactly equal (NaN where the other is NaN) to an earlier column. Returns (name, reason) pairs.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    out: list[tuple[str, str]] = []
    seen: dict[bytes, str] = {}
    for j, name in enumerate(names):
        col = v[:, j]
        present = col[~np.isnan(col)]
        if not np.isfinite(col).any():
            out.append((name, "no finite value"))
        elif np.all(present == present[0]):
            out.append((name, f"constant ({present[0]:.6g})"))
        key = np.where(np.isnan(col), np.inf, col).tobytes() + np.isnan(col).tobytes()
        if key in seen:
            out.append((name, f"equal to {seen[key]}"))
        else:
            seen[key] = name
    return out

"""Stratification metrics of a point set in [0, 1)^d."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc


def stratification_metrics(points: np.ndarray) -> dict[str, float]:
    """Centered L2 discrepancy, max |pairwise Pearson r| and 1-D stratum occupancy.

    Occupancy: for each dimension, the fraction of the n intervals [k/n, (k+1)/n) holding at least one
    point (1.0 = perfect 1-D stratification); we report the minimum over dimensions.
    """
    n, d = points.shape
    if n == 0 or d == 0:
        return {"n": n, "d": d, "centered_discrepancy": float("nan"), "max_abs_corr": float("nan"),
                "min_stratum_occupancy": float("nan")}
    cd = float(qmc.discrepancy(points, method="CD", workers=1)) if n > 1 else float("nan")
    if d > 1 and n > 2:
        r = np.corrcoef(points, rowvar=False)
        max_corr = float(np.max(np.abs(r[~np.eye(d, dtype=bool)])))
    else:
        max_corr = 0.0
    strata = np.minimum(np.floor(points * n).astype(np.int64), n - 1)
    occ = min(len(np.unique(strata[:, j])) / n for j in range(d))
    return {"n": n, "d": d, "centered_discrepancy": cd, "max_abs_corr": max_corr,
            "min_stratum_occupancy": float(occ)}

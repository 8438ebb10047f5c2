"""Feature audits on real operators: run batches through the engine and flag degenerate columns.

``python bench/features.py --audit N`` uses these to check that no SUMMARY column is constant by
construction (the acceptance bar is <= 2 % near-constant columns on the quickstart dataset), and
``tests/test_features_audit.py`` asserts :func:`dead_columns` is empty at several run lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spinlock.config.models import RunConfig
from spinlock.features.architecture import extract_architecture
from spinlock.features.block import FeatureBlock
from spinlock.features.initial import extract_initial
from spinlock.features.observer import FeatureObserver
from spinlock.storage.layout import FEATURE_FAMILIES


@dataclass(frozen=True)
class AuditResult:
    blocks: dict[str, FeatureBlock]
    """Concatenated blocks of all operators, by family."""
    status: np.ndarray
    """[N] int8 engine status (1 = diverged)."""


def run_operators(cfg: RunConfig, indices: Sequence[int], device: torch.device | None = None) -> AuditResult:
    """Sample, build and roll out the given operators batch by batch (as a shard would), with features."""
    from spinlock.generate import build_batch  # the pipeline's own batch builder (records, ICs, engine)
    from spinlock.sampling.space import sample

    device = device or torch.device("cpu")
    idx = np.asarray(list(indices), dtype=np.int64)
    sampled = sample(cfg, idx)
    b = cfg.simulation.batch_operators
    parts: dict[str, list[np.ndarray]] = {k: [] for k in FEATURE_FAMILIES}
    names: dict[str, tuple[str, ...]] = {}
    status = []
    for s in range(0, len(idx), b):
        rows = slice(s, min(s + b, len(idx)))
        _, derived, ic, engine = build_batch(cfg, sampled, rows, device)
        obs = FeatureObserver(cfg, idx[rows].tolist(), device)
        result = engine.run(ic, [obs])
        blocks = {
            "initial": extract_initial(cfg, ic),
            "architecture": extract_architecture(cfg, sampled.values[rows], derived),
            "summary": obs.summary(),
            "temporal": obs.temporal(),
        }
        for k, blk in blocks.items():
            parts[k].append(blk.values)
            names[k] = blk.names
        status.append(result.status.numpy())
    out = {k: FeatureBlock(np.concatenate(v), names[k], {}) for k, v in parts.items()}
    return AuditResult(out, np.concatenate(status))


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

"""Raw feature block → model inputs, the preprocessing shared by training and encoding.

Kept apart from ``tokenizer`` and ``model`` (which import scikit-learn, SciPy and the quantizer library)
so the Ray Data tasks that clean and prepare blocks import numpy and torch only: every fresh worker
process pays its imports, seconds each on a loaded machine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.schema import FeatureBatch


def pool_ic(fields: torch.Tensor, resolution: int) -> torch.Tensor:
    """[B, C, H, W] → [B, C, R, R] by average pooling (periodic fields: pooling, not resampling)."""
    return F.adaptive_avg_pool2d(fields.float(), resolution)


def prepare_inputs(cleaner: FeatureCleaner, batch: FeatureBatch, ic_fields: np.ndarray | None,
                   ic_resolution: int) -> dict[str, np.ndarray]:
    """Raw block → model inputs: ``x`` [B, D'], ``temporal`` [B, T', Dt'] (if any), ``ic`` [B, C, R, R]."""
    clean = cleaner.transform(batch)
    out = {"x": clean.x}
    if clean.temporal.shape[2]:
        out["temporal"] = clean.temporal
    if ic_fields is not None:
        out["ic"] = pool_ic(torch.from_numpy(np.ascontiguousarray(ic_fields)), ic_resolution).numpy()
    return out

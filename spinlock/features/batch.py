"""The four feature families of one engine batch, assembled in one place for a shard and an audit alike."""

from __future__ import annotations

import numpy as np
import torch

from spinlock.config.models import RunConfig
from spinlock.features.architecture import extract_architecture
from spinlock.features.block import FeatureBlock
from spinlock.features.initial import extract_initial
from spinlock.features.observer import FeatureObserver


def batch_features(
    cfg: RunConfig, ic: torch.Tensor, values: np.ndarray, derived: list[dict[str, float]], observer: FeatureObserver
) -> dict[str, FeatureBlock]:
    """INITIAL from the ICs [B, C, H, W], ARCHITECTURE from the mapped parameter values [B, P] and the family's
    derived quantities, SUMMARY and TEMPORAL from ``observer`` once the rollout it watched has finished."""
    return {
        "initial": extract_initial(cfg, ic),
        "architecture": extract_architecture(cfg, values, derived),
        "summary": observer.summary(),
        "temporal": observer.temporal(),
    }

"""Deterministic train/validation split by operator index, decided before anything is fitted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinlock.encoding.sketch import unit_hash


@dataclass(frozen=True)
class Split:
    """Operator ``i`` is in validation iff ``hash(seed, i) < validation_fraction``.

    The decision depends only on (seed, operator index), so it is the same in every shard, batch,
    worker and rerun, and adding operators never moves an existing one between splits.
    """

    seed: int
    validation_fraction: float

    def is_validation(self, operator_index: np.ndarray) -> np.ndarray:
        """[B] bool for operator indices [B]."""
        return unit_hash(self.seed, "tokenizer.split", operator_index) < self.validation_fraction

    def fit_rows(self, operator_index: np.ndarray, status: np.ndarray) -> np.ndarray:
        """[B] bool: rows the transform and model are fitted on (training split, status 0)."""
        return (np.asarray(status) == 0) & ~self.is_validation(operator_index)

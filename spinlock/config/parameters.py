"""Operator parameter-space specifications (one entry per sampled parameter).

Each spec maps a coordinate ``u`` in [0, 1) to a value. A spec that can take only one value is
*fixed* and consumes no Sobol dimension (so a fixed parameter never dilutes stratification).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from spinlock.config.strict import Strict


class _Spec(Strict):
    @property
    def is_fixed(self) -> bool:
        raise NotImplementedError

    def map(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Map unit coordinates [N] to values [N] (float64; choices as index)."""
        raise NotImplementedError


class IntegerSpec(_Spec):
    """Integer in [low, high], each value getting equal probability mass."""

    type: Literal["integer"]
    low: int
    high: int

    @model_validator(mode="after")
    def _check(self) -> IntegerSpec:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def map(self, u: np.ndarray) -> np.ndarray:
        n = self.high - self.low + 1
        return (self.low + np.minimum(np.floor(u * n), n - 1)).astype(np.float64)


class ContinuousSpec(_Spec):
    """Real in [low, high), uniform on a linear or log scale."""

    type: Literal["continuous"]
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> ContinuousSpec:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite")
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"scale 'log' needs low > 0, got low={self.low}")
        return self

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def map(self, u: np.ndarray) -> np.ndarray:
        if self.scale == "log":
            lo, hi = math.log(self.low), math.log(self.high)
            return np.exp(lo + u * (hi - lo))
        return self.low + u * (self.high - self.low)


class ChoiceSpec(_Spec):
    """One of ``values`` (stored as its index), optionally weighted."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _check(self) -> ChoiceSpec:
        if len({repr(v) for v in self.values}) != len(self.values):
            raise ValueError(f"values must be unique, got {self.values}")
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be >= 0 with a positive sum")
        return self

    @property
    def is_fixed(self) -> bool:
        return len(self.values) == 1

    def probabilities(self) -> np.ndarray:
        w = np.ones(len(self.values)) if self.weights is None else np.asarray(self.weights, float)
        return w / w.sum()

    def map(self, u: np.ndarray) -> np.ndarray:
        edges = np.cumsum(self.probabilities())
        edges[-1] = 1.0
        return np.minimum(np.searchsorted(edges, u, side="right"), len(self.values) - 1).astype(float)


class BooleanSpec(_Spec):
    """True with probability ``p_true`` (stored as 0/1)."""

    type: Literal["boolean"]
    p_true: float = Field(0.5, ge=0.0, le=1.0)

    @property
    def is_fixed(self) -> bool:
        return self.p_true in (0.0, 1.0)

    def map(self, u: np.ndarray) -> np.ndarray:
        return (u >= 1.0 - self.p_true).astype(np.float64)


ParameterSpec = Annotated[
    IntegerSpec | ContinuousSpec | ChoiceSpec | BooleanSpec, Field(discriminator="type")
]

"""A feature block: values with their column names (names travel with the numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FeatureBlock:
    """``values`` float32 [B, D] (TEMPORAL: [B, T', D]); ``names`` one per column (last axis)."""

    values: np.ndarray
    names: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    """JSON-serialisable metadata stored as dataset attributes, e.g. {"stride": 4} for TEMPORAL."""

    def __post_init__(self) -> None:
        if self.values.dtype != np.float32:
            raise TypeError(f"FeatureBlock values must be float32, got {self.values.dtype}")
        if self.values.ndim not in (2, 3) or self.values.shape[-1] != len(self.names):
            raise ValueError(
                f"FeatureBlock values shape {self.values.shape} does not match {len(self.names)} names"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError("FeatureBlock names must be unique")


def check_names(family: str, got: tuple[str, ...], expected: tuple[str, ...]) -> None:
    """Refuse a block whose columns differ from the registry, showing the difference."""
    if tuple(got) != tuple(expected):
        missing = [n for n in expected if n not in set(got)]
        extra = [n for n in got if n not in set(expected)]
        raise RuntimeError(
            f"{family} features do not match the name registry: missing {missing[:10]}, unexpected"
            f" {extra[:10]}" + ("" if missing or extra else " (same names, different order)")
        )

"""Parameter-model building blocks shared by every IC type.

Each IC type has one strict pydantic model (unknown keys are errors). Quantities that are randomised
per sample are *spans*: a ``[low, high]`` pair (YAML list) from which every sample draws its own value;
``low == high`` pins the value (what the property tests do). Lengths are fractions of the domain side
(the domain is the unit torus), wavenumbers are in cycles per domain.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, ConfigDict, Field

from spinlock.config.strict import Strict
from spinlock.rng import BatchRandom


class ICParams(Strict):
    """Base of every IC parameter model: frozen, unknown keys forbidden, attribute docstrings as docs."""

    model_config = ConfigDict(use_attribute_docstrings=True)  # merged with Strict's


def _ordered(v: tuple[Any, Any]) -> tuple[Any, Any]:
    if v[0] > v[1]:
        raise ValueError(f"span must be [low, high] with low <= high, got {list(v)}")
    return v


def span(ge: float, le: float) -> Any:
    """Type of a float ``[low, high]`` span whose ends lie in ``[ge, le]``."""
    end = Annotated[float, Field(ge=ge, le=le)]
    return Annotated[tuple[end, end], AfterValidator(_ordered)]


def ispan(ge: int, le: int) -> Any:
    """Type of an integer ``[low, high]`` span (both ends inclusive) whose ends lie in ``[ge, le]``."""
    end = Annotated[int, Field(ge=ge, le=le)]
    return Annotated[tuple[end, end], AfterValidator(_ordered)]


def _unique(v: list[str]) -> list[str]:
    if len(set(v)) != len(v):
        raise ValueError(f"entries must be distinct, got {v}")
    return v


def choices(options: Any) -> Any:
    """Type of a non-empty list of distinct ``Literal`` options (each sample picks one uniformly)."""
    return Annotated[list[options], Field(min_length=1), AfterValidator(_unique)]


def draw(rng: BatchRandom, bounds: tuple[float, float], *shape: int, log: bool = False) -> torch.Tensor:
    """[B, *shape] float64 uniform in ``bounds`` (log-uniform when ``log``); exact when low == high."""
    lo, hi = float(bounds[0]), float(bounds[1])
    u = rng.uniform64(*shape)
    if lo == hi:
        return torch.full_like(u, lo)
    if log:
        a, b = math.log(lo), math.log(hi)
        return torch.exp(a + (b - a) * u)
    return lo + (hi - lo) * u


def draw_int(rng: BatchRandom, bounds: tuple[int, int], *shape: int) -> torch.Tensor:
    """[B, *shape] int64 uniform in the inclusive span ``bounds``."""
    return rng.integers(int(bounds[0]), int(bounds[1]) + 1, *shape)


def draw_choice(rng: BatchRandom, options: list[str], *shape: int) -> torch.Tensor:
    """[B, *shape] int64 index into ``options`` (uniform)."""
    return rng.integers(0, len(options), *shape)

"""What an operator family is, and how one registers itself.

A family declares the parameters it needs (with the values each choice may take), its default
parameter space, how to decode a sampled row into a typed record, how operators are grouped for
batched execution, and how to build a batched module for one group.

A leaf of the operators package: a subclass of :class:`OperatorFamily` that sets ``name`` registers
itself as it is defined (``__init_subclass__``, neuraloperator's ``BaseModel`` pattern), and this module
imports no family back. :mod:`spinlock.operators.registry` imports the built-in families and answers
lookups.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from spinlock.config.parameters import (
    BooleanSpec,
    ChoiceSpec,
    ContinuousSpec,
    IntegerSpec,
    ParameterSpec,
)


class ParamRule:
    """What a family accepts for one parameter: spec kinds, allowed choice values, numeric bounds."""

    def __init__(
        self,
        kinds: tuple[type, ...],
        allowed: Sequence[Any] | None = None,
        low: float | None = None,
        high: float | None = None,
        doc: str = "",
    ):
        self.kinds, self.allowed, self.low, self.high, self.doc = kinds, allowed, low, high, doc

    def check(self, name: str, spec: ParameterSpec) -> None:
        if not isinstance(spec, self.kinds):
            kinds = ", ".join(k.model_fields["type"].annotation.__args__[0] for k in self.kinds)
            raise ValueError(f"parameters.{name}: type must be one of [{kinds}], got {spec.type!r}")
        if isinstance(spec, ChoiceSpec) and self.allowed is not None:
            bad = [v for v in spec.values if v not in self.allowed]
            if bad:
                raise ValueError(
                    f"parameters.{name}: values {bad} not allowed; expected a subset of {list(self.allowed)}"
                )
        if isinstance(spec, IntegerSpec | ContinuousSpec):
            if self.low is not None and spec.low < self.low:
                raise ValueError(f"parameters.{name}: low={spec.low} is below the minimum {self.low}")
            if self.high is not None and spec.high > self.high:
                raise ValueError(f"parameters.{name}: high={spec.high} is above the maximum {self.high}")
        if isinstance(spec, ChoiceSpec) and self.allowed is None:
            for v in spec.values:
                if not isinstance(v, int | float) or isinstance(v, bool):
                    raise ValueError(f"parameters.{name}: choice values must be numbers, got {v!r}")
                if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
                    raise ValueError(f"parameters.{name}: value {v} outside [{self.low}, {self.high}]")


NUMERIC = (IntegerSpec, ContinuousSpec, ChoiceSpec)
INTEGRAL = (IntegerSpec, ChoiceSpec)
CATEGORICAL = (ChoiceSpec,)
BOOLEAN = (BooleanSpec,)


class BatchedGroup(ABC):
    """G operators of one shape, run together: ``forward`` maps [G, M, C, H, W] → [G, M, C, H, W]."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


FAMILIES: dict[str, type[OperatorFamily]] = {}
"""Every registered family class by name (complete once :mod:`spinlock.operators.registry` is imported)."""


class OperatorFamily(ABC):
    name: ClassVar[str]
    """Registry name; a subclass that sets it registers itself (one without is an abstract intermediate)."""
    rules: ClassVar[dict[str, ParamRule]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in FAMILIES:
            first = FAMILIES[name].__qualname__
            raise ValueError(f"operator family {name!r} registered twice: {first} and {cls.__qualname__}")
        FAMILIES[name] = cls

    @abstractmethod
    def default_space(self) -> dict[str, ParameterSpec]: ...

    def validate_space(self, space: dict[str, ParameterSpec]) -> None:
        missing = sorted(set(self.rules) - set(space))
        unknown = sorted(set(space) - set(self.rules))
        if unknown:
            raise ValueError(
                f"parameters: unknown parameter(s) {unknown} for family {self.name!r};"
                f" expected exactly {sorted(self.rules)}"
            )
        if missing:
            raise ValueError(f"parameters: missing {missing} for family {self.name!r}")
        for name, spec in space.items():
            self.rules[name].check(name, spec)

    def validate_simulation(self, space: dict[str, ParameterSpec], grid: int, channels: int) -> None:  # noqa: B027
        """Checks that need the simulation shape (e.g. grid divisibility); default: none."""

    def map_dependent(self, space: dict[str, ParameterSpec], unit: np.ndarray, values: np.ndarray, grid: int) -> None:  # noqa: B027
        """Re-map, in place, parameters whose usable values depend on other sampled ones or the grid.

        ``unit``/``values``: [n, P] in ``space`` order (choices as index), as ``ParameterSpec.map`` made
        them; the family maps such a parameter's unit coordinate onto the values that take effect, so
        no sampled value is inert and the stored value is the one in use. Default: none.
        """

    @staticmethod
    def decode(space: dict[str, ParameterSpec], row: np.ndarray) -> dict[str, Any]:
        """One mapped row [P] (choices as index) → typed record {name: value}."""
        rec: dict[str, Any] = {}
        for (name, spec), v in zip(space.items(), row, strict=True):
            if isinstance(spec, ChoiceSpec):
                rec[name] = spec.values[int(v)]
            elif isinstance(spec, IntegerSpec):
                rec[name] = int(v)
            elif isinstance(spec, BooleanSpec):
                rec[name] = bool(v)
            else:
                rec[name] = float(v)
        return rec

    @abstractmethod
    def group_key(self, record: dict[str, Any]) -> tuple:
        """Operators with equal keys share tensor shapes and run as one batched group."""

    @abstractmethod
    def build_group(
        self, records: Sequence[dict[str, Any]], operator_indices: Sequence[int], seed: int, channels: int,
        device: torch.device,
    ) -> BatchedGroup:
        """Weights of operator i come from the generator keyed (seed, "weights", operator_indices[i])."""

    @abstractmethod
    def derived(self, record: dict[str, Any], channels: int) -> dict[str, float]:
        """Derived architecture quantities with fixed keys (see DERIVED_KEYS)."""


DERIVED_KEYS = ("log_param_count", "receptive_field", "effective_depth", "weight_gain")

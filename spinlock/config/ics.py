"""Initial-condition section: a weighted mix of IC entries, each a registry type with parameters."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from spinlock.config.strict import Strict
from spinlock.ics.registry import get_ic_type


class ICEntry(Strict):
    """One IC variant: a registered type, its parameters (validated by the type's model) and a weight."""

    type: str
    """A registered IC type (see docs/initial-conditions.md)."""
    weight: float = Field(1.0, gt=0)
    """Relative frequency of this entry (an extra Sobol dimension when the mix has several entries)."""
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    """Name of this variant in the dataset; defaults to the type name."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the type's generator; validated by its parameter model, defaults filled in."""

    @model_validator(mode="after")
    def _resolve(self) -> ICEntry:
        ic = get_ic_type(self.type)
        try:
            resolved = ic.params(**self.params).model_dump(mode="json")
        except ValidationError as e:
            lines = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<params>'}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"invalid params for IC type {self.type!r}: {lines}") from None
        object.__setattr__(self, "params", resolved)
        if self.label is None:
            object.__setattr__(self, "label", self.type)
        return self


class InitialConditionsConfig(Strict):
    mix: list[ICEntry] = Field(default_factory=lambda: [ICEntry(type="gaussian_random_field")], min_length=1)
    """IC entries; each operator gets one, chosen by weight along a stratified Sobol dimension."""

    @model_validator(mode="after")
    def _unique_labels(self) -> InitialConditionsConfig:
        labels = [e.label for e in self.mix]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"IC entry labels must be unique; repeated: {dup} (set 'label' per variant)")
        return self

    def probabilities(self) -> list[float]:
        total = sum(e.weight for e in self.mix)
        return [e.weight / total for e in self.mix]

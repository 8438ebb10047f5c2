"""The strict pydantic base every configuration and parameter model derives from."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """Frozen, and an unknown key is a validation error (never silently ignored).

    A subclass that needs more settings sets its own ``model_config``; pydantic merges it with this one.
    ``replaced`` maps a key a former version had to what the user should do instead: a config written by
    that version gets that message rather than a bare "unknown key".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    replaced: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, message in cls.replaced.items():
                if key in data:
                    raise ValueError(message)
        return data

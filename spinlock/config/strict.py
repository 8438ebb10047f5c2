"""The strict pydantic base every configuration and parameter model derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Frozen, and an unknown key is a validation error (never silently ignored).

    A subclass that needs more settings sets its own ``model_config``; pydantic merges it with this one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

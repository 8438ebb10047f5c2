"""Operator families behind one registry: name → family.

Importing the built-in family modules registers them (:class:`~spinlock.operators.base.OperatorFamily`
subclasses register themselves in :mod:`spinlock.operators.base`, a leaf module, so nothing here is
imported back). A new family is a module defining a subclass with a ``name``, imported below.
"""

from __future__ import annotations

import spinlock.operators.cnn  # noqa: F401  (importing a family module registers its family)
import spinlock.operators.uafno  # noqa: F401
from spinlock.operators.base import DERIVED_KEYS, FAMILIES, OperatorFamily

__all__ = ["DERIVED_KEYS", "OperatorFamily", "get_family"]


def get_family(name: str) -> OperatorFamily:
    """The family registered under ``name`` (families hold no state: a fresh instance per call)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown operator family {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]()

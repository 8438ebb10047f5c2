"""Operator families behind one registry: name → family.

Importing the built-in family modules registers them (:class:`~spinlock.operators.base.OperatorFamily`
subclasses register themselves in :mod:`spinlock.operators.base`, a leaf module, so nothing here is
imported back). A new family is a module defining a subclass with a ``name``, imported below, and
its name in :data:`spinlock.operators.names.FAMILY_NAMES` (what the config accepts; checked here).
"""

from __future__ import annotations

from collections.abc import Iterable

import spinlock.operators.cnn  # noqa: F401  (importing a family module registers its family)
import spinlock.operators.uafno  # noqa: F401
from spinlock.operators.base import DERIVED_KEYS, FAMILIES, OperatorFamily
from spinlock.operators.names import FAMILY_NAMES

__all__ = ["DERIVED_KEYS", "OperatorFamily", "check_names", "get_family"]


def check_names(registered: Iterable[str]) -> None:
    """Refuse registered family names that differ from :data:`FAMILY_NAMES` (the config's choices), so a
    family cannot be registered but unconfigurable, or configurable but missing."""
    if sorted(registered) != sorted(FAMILY_NAMES):
        raise RuntimeError(f"registered operator families {sorted(registered)} differ from the config's"
                           f" choices spinlock.operators.names.FAMILY_NAMES {sorted(FAMILY_NAMES)}")


check_names(FAMILIES)


def get_family(name: str) -> OperatorFamily:
    """The family registered under ``name`` (families hold no state: a fresh instance per call)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown operator family {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]()

"""Initial conditions: 28 types in 5 tiers behind one registry."""

from spinlock.ics.registry import ICType, generate_ic, get_ic_type, ic_types, standardize

__all__ = ["ICType", "generate_ic", "get_ic_type", "ic_types", "standardize"]

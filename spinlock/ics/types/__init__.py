"""IC type implementations; importing this package registers all of them (one module per tier)."""

from spinlock.ics.types import tier0, tier1, tier2, tier3, tier4  # noqa: F401

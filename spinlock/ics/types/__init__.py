"""IC type implementations, one module per tier; importing this package registers all of them."""

from spinlock.ics.types import tier0, tier1, tier2, tier3, tier4  # noqa: F401

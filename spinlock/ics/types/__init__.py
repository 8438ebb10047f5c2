"""IC type implementations; importing this package registers all of them (one module per tier)."""

from spinlock.ics.types import tier0  # noqa: F401

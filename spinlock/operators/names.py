"""The operator family names, kept apart from the families' code so that the config can list them
(``operators.family``, its JSON schema and docs/configuration.md) without importing torch or the
operators. :mod:`spinlock.operators.registry` refuses to import when its registry differs from them."""

FAMILY_NAMES = ("cnn", "uafno")

"""Strict run configuration (pydantic v2 models, YAML loading, overrides)."""

import importlib

_EXPORTS = {"ConfigError": "loading", "RunConfig": "models", "config_from_dict": "loading",
            "config_hash": "loading", "dump_config": "loading", "load_config": "loading"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an export's module on first use (PEP 562): a section model (``spinlock.config.parameters``,
    imported by the operators and IC types) must not import the run config, which checks its values
    against those registries."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

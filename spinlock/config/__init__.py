"""Strict run configuration (pydantic v2 models, YAML loading, overrides)."""

from spinlock.config.loading import (
    ConfigError,
    config_from_dict,
    config_hash,
    dump_config,
    load_config,
)
from spinlock.config.models import RunConfig

__all__ = ["ConfigError", "RunConfig", "config_from_dict", "config_hash", "dump_config", "load_config"]

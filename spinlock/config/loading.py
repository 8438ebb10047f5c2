"""YAML loading, ``--set`` overrides and human-readable validation errors."""

from __future__ import annotations

import functools
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from spinlock.config.models import RunConfig
from spinlock.errors import SpinlockError


class ConfigError(SpinlockError, ValueError):
    """A configuration problem; the message names the file, the key path and the allowed values."""


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk ``loc`` through nested pydantic models (best effort, for listing allowed keys)."""
    cur: Any = model
    for part in loc:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = cur.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        nxt = None
        for cand in (ann, *typing.get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
                break
        cur = nxt
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        # discriminated unions put the tag in the loc; drop it for readability
        path = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent = _model_at(RunConfig, loc[:-1])
            allowed = sorted(parent.model_fields) if parent is not None else []
            hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  {path}: unknown key{hint}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {msg}{shown}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` → (['a','b','c'], yaml-parsed VALUE)."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set has an empty key in {item!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {e}") from None
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"--set {'.'.join(path)}: '{'.'.join(path[: i + 1])}' is a value, not a section"
                )
            node = nxt
        node[path[-1]] = value
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", overrides: list[str] = ()) -> RunConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(dict(raw), list(overrides))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Load and strictly validate a YAML run config (plus ``--set`` overrides)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return config_from_dict(raw, str(p), overrides)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every default filled in); round-trips through load_config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# Sections that say *how* to execute or post-process, not *what* is generated: changing them (e.g. the
# actor pool size between a run and its resume) must not invalidate finished shards.
EXECUTION_SECTIONS = ("distributed", "tokenizer")


def config_hash(cfg: RunConfig) -> str:
    """Stable short hash of everything that determines the generated data (identity of shards)."""
    return _hash_of_json(cfg.model_dump_json())


@functools.lru_cache(maxsize=64)
def _hash_of_json(dumped: str) -> str:
    # cached: the merge checks the hash of every shard (a YAML dump each was 2/3 of merge time)
    data = json.loads(dumped)
    for k in EXECUTION_SECTIONS:
        data.pop(k, None)
    return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:16]

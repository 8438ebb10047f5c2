"""Human-readable descriptions of the IC registry: parameter tables for the CLI and the docs.

Everything is read from the parameter models' JSON schema (defaults, bounds, allowed values) and their
attribute docstrings, so the listing can never drift from what the config validator accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel

from spinlock.ics.registry import TIER_NAMES, ICType, ic_types


@dataclass(frozen=True)
class ParamDoc:
    name: str
    default: str
    range: str
    doc: str


def _num(v: float) -> str:
    return f"{v:g}"


def _bounds(schema: dict) -> str:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    left = "(" if "exclusiveMinimum" in schema else "["
    right = ")" if "exclusiveMaximum" in schema else "]"
    lo_s = _num(lo) if lo is not None else "-inf"
    hi_s = _num(hi) if hi is not None else "inf"
    return f"{left}{lo_s}, {hi_s}{right}"


def _range(schema: dict) -> str:
    kind = schema.get("type")
    if kind == "array" and "prefixItems" in schema:
        end = schema["prefixItems"][0]
        what = "int" if end.get("type") == "integer" else "float"
        return f"[low, high] {what}s in {_bounds(end)}"
    if kind == "array" and "enum" in schema.get("items", {}):
        return "non-empty subset of {" + ", ".join(schema["items"]["enum"]) + "}"
    if kind == "boolean":
        return "true | false"
    if kind in ("number", "integer"):
        return f"{'int' if kind == 'integer' else 'float'} in {_bounds(schema)}"
    return kind or "?"


def param_docs(model: type[BaseModel]) -> list[ParamDoc]:
    """One :class:`ParamDoc` per field of an IC parameter model, in declaration order."""
    props = model.model_json_schema()["properties"]
    rows = []
    for name, field in model.model_fields.items():
        schema = props[name]
        default = json.dumps(field.default, ensure_ascii=False).replace('"', "")
        rows.append(ParamDoc(name, default, _range(schema), (field.description or "").replace("\n", " ")))
    return rows


def by_tier(types: dict[str, ICType] | None = None) -> dict[int, list[ICType]]:
    """Registered types grouped by tier (registration order inside a tier)."""
    types = ic_types() if types is None else types
    out: dict[int, list[ICType]] = {t: [] for t in TIER_NAMES}
    for ic in types.values():
        out[ic.tier].append(ic)
    return out


def format_text(types: dict[str, ICType] | None = None) -> str:
    """Plain-text listing of types by tier with their parameters (for ``spinlock ics``)."""
    lines = []
    for tier, items in by_tier(types).items():
        if not items:
            continue
        lines.append(f"Tier {tier} — {TIER_NAMES[tier]} ({len(items)} type{'' if len(items) == 1 else 's'})")
        for ic in items:
            lines.append(f"  {ic.name}: {ic.description}")
            lines.append(f"    channels: {ic.channels}")
            for p in param_docs(ic.params):
                lines.append(f"    - {p.name} = {p.default}  ({p.range})")
                lines.append(f"        {p.doc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_markdown(types: dict[str, ICType] | None = None) -> str:
    """Markdown reference (one section per tier, a parameter table per type) for the docs."""
    lines = []
    for tier, items in by_tier(types).items():
        if not items:
            continue
        lines += [f"### Tier {tier} — {TIER_NAMES[tier]}", ""]
        for ic in items:
            lines += [f"#### `{ic.name}`", "", ic.description, "", f"*Channels:* {ic.channels}.", ""]
            lines += ["| parameter | default | range | meaning |", "|---|---|---|---|"]
            for p in param_docs(ic.params):
                doc = p.doc.replace("|", "\\|")
                lines.append(f"| `{p.name}` | `{p.default}` | {p.range} | {doc} |")
            lines.append("")
    return "\n".join(lines)

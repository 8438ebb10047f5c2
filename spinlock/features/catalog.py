"""The feature catalogue of docs/features.md, rendered from the name registry.

``python -m spinlock.features.catalog`` rewrites the generated part of docs/features.md (between the
BEGIN/END markers); a test checks the committed file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spinlock.config import config_from_dict
from spinlock.features.names import (
    CATEGORIES,
    POOL_DOCS,
    architecture_entries,
    initial_entries,
    summary_entries,
    temporal_entries,
)

BEGIN = "<!-- BEGIN FEATURE CATALOG (generated: python -m spinlock.features.catalog) -->"
END = "<!-- END FEATURE CATALOG -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| column | definition |", "|---|---|", *(f"| `{n}` | {_cell(d)} |" for n, d in rows)]


def render() -> str:
    """Markdown for the default config: every column of every family with its definition."""
    cfg = config_from_dict({})
    fc = cfg.features
    summary = summary_entries(fc)
    out = [BEGIN, "", "### Pools", "", "| pool | definition |", "|---|---|"]
    out += [f"| `{p}` | {_cell(d)} |" for p, d in POOL_DOCS.items()]
    out += ["", f"### INITIAL ({len(initial_entries())} columns)", "", *_table(initial_entries())]
    arch = architecture_entries(cfg)
    out += ["", f"### ARCHITECTURE ({len(arch)} columns for the default CNN parameter space)", "", *_table(arch)]
    out += ["", f"### SUMMARY ({len(summary)} columns with every category enabled)"]
    for name, cat in CATEGORIES.items():
        rows = [(n, d) for n, d in summary if n.split(".")[0] == name]
        out += ["", f"#### {name} ({len(rows)})", "", _cell(cat.doc), "", *_table(rows)]
    temporal = temporal_entries(fc)
    out += ["", f"### TEMPORAL ({len(temporal)} curves, each [T'] at steps 0, s, 2s, ...)", "", *_table(temporal)]
    out += ["", END]
    return "\n".join(out)


def splice(text: str) -> str:
    """``text`` with its catalogue section replaced by :func:`render`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC} lacks the catalogue markers {BEGIN!r} ... {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + render() + tail


def main() -> None:
    DOC.write_text(splice(DOC.read_text()))
    print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()

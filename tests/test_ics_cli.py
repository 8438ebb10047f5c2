"""`spinlock ics` (listing, filtering, gallery) and docs/initial-conditions.md staying in step with the registry."""

from __future__ import annotations

import re
from pathlib import Path

from spinlock.cli.main import main
from spinlock.ics import ic_types
from spinlock.ics.describe import format_markdown, param_docs
from spinlock.ics.registry import TIER_NAMES

DOC = Path(__file__).resolve().parents[1] / "docs" / "initial-conditions.md"


def test_listing_shows_every_type_by_tier_with_parameters(capsys):
    assert main(["ics"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("Tier ")]
    assert headers == [
        f"Tier {t} — {n} ({c} types)" for t, n, c in zip(TIER_NAMES, TIER_NAMES.values(), [7, 5, 5, 5, 6], strict=True)
    ]
    for name, ic in ic_types().items():
        assert f"  {name}: {ic.description}" in out
        for p in param_docs(ic.params):
            assert f"    - {p.name} = {p.default}  ({p.range})" in out


def test_listing_filter_and_markdown(capsys):
    assert main(["ics", "--type", "turing_pattern", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "#### `turing_pattern`" in out and "#### `dla_cluster`" not in out
    assert "| `wavelength` | `[0.08, 0.2]` | [low, high] floats in [0.02, 0.5] |" in out
    assert main(["ics", "--type", "turing_patern"]) == 2
    assert "unknown IC type(s) ['turing_patern']" in capsys.readouterr().err


def test_gallery_renders_every_type(tmp_path, capsys):
    out = tmp_path / "sub" / "gallery.png"
    assert main(["ics", "--out", str(out), "--samples", "1", "--grid", "16", "--seed", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "28 types × 1 samples, grid 16, seed 3" in capsys.readouterr().out
    assert main(["ics", "--out", str(out), "--samples", "0"]) == 2


def test_doc_parameter_tables_match_the_registry():
    text = DOC.read_text()
    block = re.search(r"<!-- BEGIN GENERATED[^\n]*-->\n(.*?)<!-- END GENERATED -->", text, re.S)
    assert block, "docs/initial-conditions.md lost its generated block"
    assert block.group(1).strip() == format_markdown().strip(), "regenerate with `spinlock ics --format markdown`"
    summary = text[: block.start()]
    for name in ic_types():
        assert f"| `{name}` |" in summary, f"{name} missing from the properties table"

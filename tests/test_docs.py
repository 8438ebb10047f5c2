"""Docs stay true to the code: generated config reference, README commands, linked files."""

from __future__ import annotations

import re

from conftest import ROOT

from spinlock.config.reference import render


def test_configuration_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "regenerate with: python -m spinlock.config.reference > docs/configuration.md"


def test_readme_links_exist():
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / link).exists(), f"README links a missing file: {link}"


def test_readme_test_command_is_ci_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = 'pip install torch==2.13.0 -e ".[test]" && python -m pytest -q'
    assert cmd in readme
    assert 'torch==2.13.0 -e ".[test]" && python -m pytest -q' in ci

"""README and docs command blocks that must agree with each other and with pyproject (cheap checks; the
cluster block itself runs in test_readme_cluster.py)."""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT


def fenced_blocks(markdown: str) -> list[tuple[str, str, str]]:
    """``(section heading, language, body)`` of every fenced block, in order."""
    blocks, heading = [], ""
    for m in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", markdown, flags=re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            blocks.append((heading, m.group(2), m.group(3)))
    return blocks


def block(path: str, heading: str) -> str:
    found = [body for h, lang, body in fenced_blocks((ROOT / path).read_text()) if h == heading and lang == "bash"]
    assert len(found) == 1, (path, heading, found)
    return found[0]


def readme_cluster_block() -> str:
    return block("README.md", "On a Ray cluster")


def test_deploy_guide_single_head_block_is_readmes():
    assert block("docs/deploy.md", "2. One machine with a Ray head") == readme_cluster_block()


def test_local_head_blocks_keep_token_auth_on():
    for text in (readme_cluster_block(), block("docs/distributed.md", "`ray job submit` to a head")):
        assert "export RAY_AUTH_MODE=token" in text and "ray get-auth-token --generate" in text
        assert text.index("export RAY_AUTH_MODE=token") < text.index("ray start --head")
        assert "RAY_AUTH_MODE=disabled" not in text


def test_install_lines_name_no_hosts_and_match_requires_python():
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Two commands"):readme.index("## What you get")]
    assert not re.search(r"https?://|\b[\w-]+\.(org|com|net|io)\b", install), "no index hosts in the install lines"
    assert "CUDA build" in install and "CPU-only build" in install
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.15" and f'requires-python = "{requires}"' in install
    assert "Python 3.11 to 3.14" in install

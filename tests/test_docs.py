"""The user's documents: the README's size and links, docs pages that exist, and the Python API page run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

DOCS = sorted((REPO / "docs").rglob("*.md"))


def test_readme_is_a_short_users_document():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "make demo" in text and "make test" in text and "```python" in text


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a Markdown page's headings (lower case, punctuation dropped, spaces to
    hyphens, repeats numbered), plus explicit ``<a id="...">`` / ``<a name="...">``."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    out = set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", [REPO / "README.md", REPO / "CHANGELOG.md", *DOCS], ids=lambda p: p.name)
def test_links_resolve_and_nothing_outside_the_repository_is_cited(doc):
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text
    assert not re.search(r"\bissue[- ]?#?\d", text, re.I), "cites the issue tracker"
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        page = doc.parent / target if target else doc
        assert page.exists(), f"{doc.name}: link to {target} does not resolve"
        if anchor and page.suffix == ".md":
            assert anchor in anchors(page), f"{doc.name}: link to {target}#{anchor}: no such section in {page.name}"


def test_the_python_api_page_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python-api.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TRIM-Thr CPT(80%):" in r.stdout and (tmp_path / "reports" / "mine" / "report.md").exists()
    assert (tmp_path / "checkpoints_mine" / "trim_agg_b15" / "policy.json").exists()

"""The README is a front page: short, and every relative link in it and in docs/ resolves to a file
and, where it names one, to a heading of that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
MAX_README_LINES = 160


def _prose(text: str, inline_code: bool = False) -> str:
    """The text outside fenced code blocks (and outside inline code unless ``inline_code``)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line if inline_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"`|\*\*|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _prose(path.read_text(encoding="utf-8"), inline_code=True).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    links = LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in links if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_the_slug_follows_github():
    assert _slug("The paper's setting on a GPU, from download to table") == (
        "the-papers-setting-on-a-gpu-from-download-to-table"
    )
    assert _slug("The synthetic demo (`make demo`)") == "the-synthetic-demo-make-demo"


def test_there_are_pages_and_links():
    assert len(PAGES) > 5
    assert relative_links(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < MAX_README_LINES
    assert not [n for n, line in enumerate(lines, 1) if len(line) > 200]


def test_no_commit_hash_outside_experiments():
    hashes = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
    found = {
        page.name: hashes.findall(page.read_text(encoding="utf-8"))
        for page in PAGES
        if hashes.search(page.read_text(encoding="utf-8"))
    }
    assert not found

#!/usr/bin/env python
"""Checks every internal link of the built documentation site: each ``href`` / ``src`` that points into the site
(not to another host) must name an existing file, and a ``#fragment`` an element with that id. Prints one line per
broken link and exits 1 when there is any; ``python docs/check_links.py docs/_build/html``."""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list = []
        self.ids: set = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)
            if name == "id" and value:
                self.ids.add(value)


def check(site: Path) -> list:
    pages = {p.resolve(): _Links() for p in site.rglob("*.html")}
    for page, parser in pages.items():
        parser.feed(page.read_text(errors="replace"))
    broken = []
    for page, parser in pages.items():
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site.resolve())}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site.resolve())}: {link} (no #{parts.fragment} there)")
    return broken


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0] if argv else "docs/_build/html")
    if not (site / "index.html").is_file():
        print(f"error: {site} holds no built site (index.html); build it with sphinx-build first", file=sys.stderr)
        return 2
    broken = check(site)
    for line in broken:
        print(line)
    print(f"{len(broken)} broken internal links in {site}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

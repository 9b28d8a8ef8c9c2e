"""MkDocs hook: links in the repository's top-level Markdown files, included into the site
(REPRODUCTION.md, BENCHMARKS.md), point to the site's pages instead of the repository's files.

The include-markdown plugin rewrites a relative link of an included file to be relative to the
page (``BENCHMARKS.md`` in REPRODUCTION.md becomes ``../BENCHMARKS.md`` in docs/reproduction.md);
this hook maps those onto the pages that hold them, and turns a link to any other file of the
repository (a script, a config) into its path in code, since the site does not hold it.
"""
from __future__ import annotations

import re

PAGES = {"README.md": "index.md", "REPRODUCTION.md": "reproduction.md",
         "BENCHMARKS.md": "benchmarks.md"}
LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(((?:\.\./)+)([^)#\s]*)(#[^)\s]*)?\)")


def _rewrite(match: re.Match[str], depth: int) -> str:
    text, ups, path, anchor = match.group(1), match.group(2), match.group(3), match.group(4) or ""
    if ups.count("../") != depth:              # not a link to the repository root
        return match.group(0)
    prefix = "../" * (depth - 1)
    if path in PAGES:
        return f"[{text}]({prefix}{PAGES[path]}{anchor})"
    if path.startswith("docs/"):
        return f"[{text}]({prefix}{path[len('docs/'):]}{anchor})"
    return text if text.startswith("`") else f"{text} (`{path}`)"


def on_page_markdown(markdown: str, page, config, files) -> str:   # noqa: ANN001 (MkDocs API)
    depth = page.file.src_uri.count("/") + 1    # ../ steps from the page up to the repository
    return LINK.sub(lambda m: _rewrite(m, depth), markdown)

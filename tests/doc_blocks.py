"""Code blocks of the docs that the tests run, so an example cannot go stale.

A block is marked by an HTML comment on the line before its opening fence that
starts with ``<!-- tested:``; :func:`doc_code_blocks` returns those blocks of a
Markdown file in order, with their language.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^<!-- tested:[^\n]*-->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def doc_code_blocks(name: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every tested block in ``docs/<name>``."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer((DOCS / name).read_text(encoding="utf-8"))]

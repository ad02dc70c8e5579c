"""The admin's catalogues (webapp/translations): every string marked in the admin's code and templates
has a Russian translation, and the committed .mo is the compiled .po (run `make translations`)."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "webapp" / "translations" / "ru" / "LC_MESSAGES"


def marked() -> set[str]:
    method_map = [("webapp/admin/**.py", "python"), ("webapp/templates/admin/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, keywords=keywords):
        found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


def test_every_marked_string_has_a_russian_translation():
    with open(CATALOGUE / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    assert marked(), "nothing extracted: the extraction rules no longer match the admin's sources"
    missing = sorted(m for m in marked() if not po.get(m))
    assert missing == [], f"add Russian for these to messages.po and run `make translations`: {missing}"


def test_the_committed_mo_is_the_compiled_po():
    with open(CATALOGUE / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id and m.string}
    mo = {m.id: m.string for m in read_mo(io.BytesIO((CATALOGUE / "messages.mo").read_bytes())) if m.id}
    assert mo == po, "messages.mo is stale: run `make translations`"

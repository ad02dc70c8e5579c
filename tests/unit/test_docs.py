"""Generated docs stay in step with the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from vestnik.workers.reference import events_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_events_reference_matches_the_registry_and_rules():
    assert (DOCS / "events.md").read_text() == events_markdown(), (
        "docs/events.md is stale: run .venv/bin/python -m vestnik.workers.reference > docs/events.md")


def test_every_registered_event_is_documented():
    from vestnik.shared.events import all_event_types

    text = (DOCS / "events.md").read_text()
    assert all(f"## `{e.name}`" in text for e in all_event_types())


def test_every_setting_is_documented():
    from dataclasses import fields

    from vestnik.shared.config import PREFIX, Settings

    text = (DOCS / "configuration.md").read_text()
    missing = [f"{PREFIX}{f.name.upper()}" for f in fields(Settings) if f"`{PREFIX}{f.name.upper()}`" not in text]
    assert missing == [], f"add these to docs/configuration.md: {missing}"


ROOT = DOCS.parent
_NAME = re.compile(r"VESTNIK_[A-Z0-9_]*[A-Z0-9]")
#: Where variables are read or set: the code, its tests and benches, and what runs it.
_SOURCES = ("shared", "workers", "webapp", "outbox", "vestnik", "migrations", "tests", "bench", "docker", ".ci",
            "Makefile")


def _variables_in_sources() -> dict[str, str]:
    """Every ``VESTNIK_*`` name written in the sources (the Settings fields included), with one file naming it."""
    from dataclasses import fields

    from vestnik.shared.config import PREFIX, Settings

    found = {f"{PREFIX}{f.name.upper()}": "shared/config.py" for f in fields(Settings)}
    for source in _SOURCES:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if "__pycache__" in file.parts or file.suffix in {".pyc", ".png"}:
                continue
            for name in _NAME.findall(file.read_text(encoding="utf-8", errors="ignore")):
                found.setdefault(name, str(file.relative_to(ROOT)))
    return found


def test_every_variable_the_code_reads_is_documented_and_every_documented_one_is_read():
    documented = set(re.findall(r"`(VESTNIK_[A-Z0-9_]+)`", (DOCS / "configuration.md").read_text()))
    in_sources = _variables_in_sources()
    undocumented = {name: where for name, where in in_sources.items() if name not in documented}
    assert not undocumented, f"add these to docs/configuration.md (name: a file that uses it): {undocumented}"
    unread = sorted(documented - set(in_sources))
    assert not unread, f"docs/configuration.md lists variables nothing reads: {unread}"



def test_every_documented_default_is_the_settings_default():
    """A row of docs/configuration.md with a default in backticks gives the value Settings starts with."""
    from dataclasses import fields

    from vestnik.shared.config import PREFIX, Settings, load_settings

    defaults = {f"{PREFIX}{f.name.upper()}": (f.name, f.default) for f in fields(Settings)}
    rows = re.findall(r"^\| `(VESTNIK_[A-Z0-9_]+)` \| `([^`]*)` \|", (DOCS / "configuration.md").read_text(), re.M)
    wrong = {name: (shown, defaults[name][1]) for name, shown in rows if name in defaults
             and getattr(load_settings({name: shown}), defaults[name][0]) != defaults[name][1]}
    assert "VESTNIK_LOCALE_FALLBACK" in dict(rows)
    assert not wrong, f"docs/configuration.md shows other defaults than shared/config.py: {wrong}"

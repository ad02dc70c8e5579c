"""Generated docs stay in step with the code they describe."""

from __future__ import annotations

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

"""The admin in Russian, every page of it (issue 14): a Russian admin walks every admin page reachable
from the dashboard (``admin_pages.crawl``) and reads no English the catalogue translates, nor any of
Flask-Admin's own words; every string marked in the admin has a Russian translation
(``test_admin_catalogue.py`` checks the .po against the sources and the .mo against the .po)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import update

from tests.e2e.admin_site import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.integration.admin_pages import crawl, read, seed_everything
from tests.integration.test_admin import login
from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser
from vestnik.webapp import create_app

CATALOGUE = Path(__file__).resolve().parents[2] / "webapp" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"

#: Flask-Admin's own words on Vestnik's pages (its catalogue translates them): none may show in English.
FLASK_ADMIN_WORDS = ("List", "Create", "Edit", "Details", "Delete", "Save", "Cancel", "Search", "Add Filter",
                     "Apply", "Reset Filters", "Export", "With selected", "Save and Add Another",
                     "Save and Continue Editing", "Are you sure you want to delete this record?")

#: Pages the brief names, which must be among those walked.
MUST_WALK = ("/admin/", "/admin/reports/", "/admin/broadcasts/", "/admin/templates/", "/admin/notification/",
             "/admin/client/", "/admin/rules/", "/admin/quiet-hours/", "/admin/audit/", "/admin/outboxevent/",
             "/admin/api-keys/", "/admin/account/", "/admin/broadcasts/new", "/admin/template/new/")


def english_ui() -> list[re.Pattern]:
    """Each English string the catalogue translates, as a pattern of a whole text on a page (a
    ``%(name)s`` placeholder stands for anything), and Flask-Admin's words."""
    with open(CATALOGUE, "rb") as f:
        messages = [m for m in read_po(f) if m.id and isinstance(m.id, str) and m.string and m.string != m.id]
    patterns = []
    for text in [m.id for m in messages] + list(FLASK_ADMIN_WORDS):
        parts = re.split(r"%\([a-z_]+\)s", text.replace("%%", "%"))
        if len(parts) > 1 and len(re.findall(r"[A-Za-z]", "".join(parts))) < 10:
            continue  # "%(first)s to %(last)s.": too little English of its own to tell it from data
        patterns.append(re.compile(".+".join(re.escape(" ".join(p.split())) for p in parts)))
    return patterns


@pytest.fixture
def russian_admin(sqlite_url):
    from vestnik.shared.db import make_engine, make_session_factory

    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    seed_everything(factory)
    with factory() as s:
        s.execute(update(AdminUser).where(AdminUser.email == ADMIN_EMAIL).values(locale="ru"))
        s.commit()
    app = create_app(Settings(secret_key="k" * 32), session_factory=factory, config={"TESTING": True})
    client = app.test_client()
    assert login(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
    yield client
    engine.dispose()


def test_every_admin_page_reads_in_russian(russian_admin):
    english = english_ui()
    walked, found = [], []
    for path, html in crawl(russian_admin):
        walked.append(path.split("?")[0])
        assert '<html lang="ru"' in html, path
        texts, _links = read(html)
        for text in texts:
            hits = [p.pattern for p in english if p.fullmatch(text)]
            if hits:
                found.append((path, text))
    assert not [p for p in MUST_WALK if p not in walked], f"not reached: {set(MUST_WALK) - set(walked)}"
    assert len(set(walked)) >= 20
    assert found == [], "English on a Russian page (wrap it in _() and run `make translations`): " + repr(found)


def test_every_event_description_is_in_the_catalogue():
    """The rules page shows each event's description (its docstring in shared/events.py) and each
    step's condition through the catalogue: a changed one must be marked again (webapp/admin/rules.py)."""
    from vestnik.shared.events import all_event_types
    from vestnik.webapp.admin.rules import DEFAULT_RULES

    with open(CATALOGUE, "rb") as f:
        translated = {m.id for m in read_po(f) if m.id and m.string}
    shown = {e.description for e in all_event_types() if e.name in DEFAULT_RULES}
    assert shown and shown <= translated, sorted(shown - translated)
    conditions = {s.when for rule in DEFAULT_RULES.values() for s in rule.steps if s.when}  # rules.CONDITIONS
    assert conditions and conditions <= translated, sorted(conditions - translated)


def test_the_catalogue_is_complete_and_the_walk_would_see_english():
    with open(CATALOGUE, "rb") as f:
        catalogue = [m for m in read_po(f) if m.id]
    assert [m.id for m in catalogue if not m.string or m.fuzzy] == []
    english = english_ui()  # the check above is not vacuous: an English word of a page is caught
    assert any(p.fullmatch("Due now, waiting") for p in english)
    assert any(p.fullmatch("last 14 days: may have arrived, not resent") for p in english)
    assert not any(p.fullmatch("Пора отправить, ждут") for p in english)

"""Every page of the admin, found by following its links from the dashboard: for tests that read
each page (``test_admin_russian.py``).  Also a tool: ``python -m tests.integration.admin_pages``
prints the Latin-script words each page shows in Russian."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

#: Links not to follow: they act (sign out), download, or only sort or page the same view.
SKIP = re.compile(r"^/admin/(logout|language)|/export/|/ajax/|\?.*\b(sort|desc|page|search)=")


class _Text(HTMLParser):
    """What a person reads on a page: text outside <script>/<style> (and <textarea>: a form's data,
    not its words), and the titles, labels, placeholders and values of buttons a screen shows or
    reads out; and the page's links."""

    SHOWN_ATTRS = ("title", "placeholder", "aria-label", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.links: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "style", "textarea"):
            self._skip += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for name in self.SHOWN_ATTRS:
            if a.get(name):
                self.texts.append(a[name])
        if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
            self.texts.append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "textarea") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


def read(html: str) -> tuple[list[str], list[str]]:
    parser = _Text()
    parser.feed(html)
    return parser.texts, parser.links


def crawl(client, start: str = "/admin/", limit: int = 200) -> Iterator[tuple[str, str]]:
    """(path, html) of each admin page reachable from ``start`` by GET links; one page per route
    shape (digits taken as ids), so a list of 200 rows costs one detail page, not 200."""
    seen_shapes: set[str] = set()
    queue = [start]
    while queue and len(seen_shapes) < limit:
        url = queue.pop(0)
        parts = urlsplit(url)
        keys = sorted(k.split("=")[0] for k in parts.query.split("&") if k and not k.startswith("url="))
        shape = re.sub(r"\d+", "N", parts.path) + "?" + "&".join(keys)
        if shape in seen_shapes:
            continue
        seen_shapes.add(shape)
        resp = client.get(url)
        if resp.status_code != 200 or "text/html" not in resp.content_type:
            continue
        yield url, resp.text
        for href in read(resp.text)[1]:
            target = urlsplit(href)
            if target.netloc or not target.path.startswith("/admin") or SKIP.search(href):
                continue
            if target.query and not re.search(r"\b(id|url)=", target.query):
                href = target.path  # a filtered list is the list: its words are the same
            queue.append(href)


def seed_everything(session_factory) -> None:
    """The browser tests' data (tests/e2e/admin_site.py) and one of each thing they lack: a broadcast,
    a rejected event, an API key, a rule override, quiet hours."""
    from tests.e2e.admin_site import seed
    from vestnik.shared.models import Broadcast, OutboxEvent, utcnow

    seed(session_factory)
    now = utcnow()
    with session_factory() as s:
        s.add(Broadcast(name="Новогодний концерт", template_code="ANNOUNCEMENT", channels=["telegram", "email"],
                        category="marketing", targeting={}, data={"text": "Концерт 28 декабря"},
                        status="draft", initiator="admin:1", created_at=now - timedelta(days=1)))
        s.add(Broadcast(name="Перенос занятий", template_code="ANNOUNCEMENT", channels=["telegram"],
                        category="service", targeting={}, data={"text": "Занятия переносятся"},
                        status="finished", initiator="admin:1", created_at=now - timedelta(days=3),
                        started_at=now - timedelta(days=3), finished_at=now - timedelta(days=3),
                        planned_clients=5, planned_messages=5, planned_by_channel={"telegram": 5}))
        s.add(OutboxEvent(event_type="lesson_cancelled", data={"lesson": "x"}, status="failed",
                          error="data.lesson_id: field required", created_at=now - timedelta(hours=2)))
        s.add(OutboxEvent(event_type="invoice_created", data={"invoice_id": 17}, recipients=[1, 99],
                          status="processed", created_at=now - timedelta(hours=1),
                          processed_at=now - timedelta(hours=1), published_at=now - timedelta(hours=1)))
        s.commit()


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    import sys
    import tempfile
    from pathlib import Path

    from tests.integration.test_admin import login
    from vestnik.shared.config import Settings
    from vestnik.shared.db import make_engine, make_session_factory
    from vestnik.shared.migrate import upgrade
    from vestnik.webapp import create_app

    folder = Path(tempfile.mkdtemp())
    engine = make_engine(f"sqlite:///{folder / 'a.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    seed_everything(factory)
    from sqlalchemy import update

    from tests.e2e.admin_site import ADMIN_EMAIL
    from vestnik.shared.models import AdminUser

    with factory() as s:
        s.execute(update(AdminUser).values(locale=sys.argv[1] if len(sys.argv) > 1 else "ru"))
        s.commit()
    app = create_app(Settings(secret_key="k" * 32), session_factory=factory, config={"TESTING": True})
    c = app.test_client()
    from tests.e2e.admin_site import ADMIN_PASSWORD

    login(c, ADMIN_EMAIL, ADMIN_PASSWORD)
    for path, html in crawl(c):
        texts = [t for t in read(html)[0] if re.search(r"[A-Za-z]{3,}", t)]
        print(f"== {path}")
        for t in dict.fromkeys(texts):
            print("   ", t[:160])

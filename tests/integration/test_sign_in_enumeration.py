"""No sign-in page tells whether an address is an admin's or a client's (issue 13, point 3).

Timing is judged by the work done, not by a stopwatch: for a real and an
unknown address the request runs the same SQL statements in the same order
(the secret of a real client is stored on the background pool, with its
send), hashes the password exactly once (admin) and gives the same answer,
before the lockout or throttle and after it.  The times themselves are
printed by ``bench/admin_login_timing.py`` and ``bench/sign_in_timing.py``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tests.integration.test_admin import PASSWORD, make_admin_app
from tests.integration.test_admin import login as admin_login
from tests.integration.test_profile import csrf, make_settings
from vestnik.shared.models import Client
from vestnik.webapp import create_app


@contextmanager
def statements_of_this_thread(engine) -> Iterator[list[str]]:
    """The SQL text each statement this thread runs (the background pool's are left out)."""
    me = threading.get_ident()
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == me:
            seen.append(re.sub(r"\s+", " ", statement))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def neutral(text: str, *emails: str) -> str:
    """A page with the typed address (and the per-page CSRF token) blanked out."""
    for email in emails:
        text = text.replace(email, "EMAIL")
    return re.sub(r'(csrf_token"[^>]*value)="[^"]+"', r"\1", text)


@pytest.fixture
def admin_app(session_factory):
    return make_admin_app(session_factory)


def test_admin_sign_in_runs_the_same_statements_and_hashes_once_for_a_real_and_an_unknown_address(
        admin_app, engine, monkeypatch):
    from vestnik.webapp.admin import auth

    hashes: list[str] = []
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda stored, given: hashes.append(stored) or real_check(
        stored, given))
    runs: dict[str, list[tuple]] = {}
    for email in ("admin@school.test", "ghost@school.test"):
        c = admin_app.test_client()
        runs[email] = []
        for _ in range(auth.MAX_FAILED_LOGINS + 1):  # five failures, then the locked answer (right password)
            hashes.clear()
            attempt = len(runs[email]) + 1
            password = PASSWORD if attempt > auth.MAX_FAILED_LOGINS else "wrong password"
            with statements_of_this_thread(engine) as sql:
                resp = admin_login(c, email=email, password=password)
            runs[email].append((resp.status_code, neutral(resp.text, email), tuple(sql[-12:]), len(hashes)))
    known, unknown = runs["admin@school.test"], runs["ghost@school.test"]
    assert [r[0] for r in known] == [401] * auth.MAX_FAILED_LOGINS + [429]
    assert [r[3] for r in known] == [1] * auth.MAX_FAILED_LOGINS + [0]  # one hash per try; none once locked
    for attempt, (a, b) in enumerate(zip(known, unknown, strict=True), start=1):
        assert a[0] == b[0] and a[1] == b[1], f"attempt {attempt}: the answers differ"
        assert a[2] == b[2], f"attempt {attempt}: different SQL for a real and an unknown address"
        assert a[3] == b[3], f"attempt {attempt}: a different number of password hashes"


@pytest.fixture
def profile_app(bot_api, smtp_server, session_factory):
    settings = make_settings(bot_api, smtp_server, client_sign_in_per_address=3)
    app = create_app(settings, session_factory=session_factory, config={"TESTING": True})
    with session_factory() as s:
        s.add(Client(id=1, name="Anna", email="anna@example.com", telegram_chat_id="1001", locale="en"))
        s.commit()
    yield app
    messenger = app.extensions.get("vestnik_sign_in_messenger")
    if messenger is not None:
        messenger.close()


@pytest.mark.parametrize("method", ["link", "code"])
def test_profile_sign_in_runs_the_same_statements_for_a_client_and_an_unknown_address(
        profile_app, engine, smtp_server, bot_api, method):
    limit = 3  # client_sign_in_per_address: three answers, then the throttled one
    runs: dict[str, list[tuple]] = {}
    for email in ("anna@example.com", "nobody@example.com"):
        c = profile_app.test_client()
        runs[email] = []
        for _ in range(limit + 1):
            page = c.get("/me/login")
            with statements_of_this_thread(engine) as sql:
                resp = c.post("/me/login", data={"email": email, "method": method, "csrf_token": csrf(page.text)})
            runs[email].append((resp.status_code, neutral(resp.text, email), tuple(sql)))
    known, unknown = runs["anna@example.com"], runs["nobody@example.com"]
    assert [r[0] for r in known][-1] == 429
    for attempt, (a, b) in enumerate(zip(known, unknown, strict=True), start=1):
        assert a[:2] == b[:2], f"attempt {attempt}: the answers differ"
        assert a[2] == b[2], f"attempt {attempt}: different SQL for a client and an unknown address"
    # The client was still sent what they asked for (stored and sent by the background pool).
    if method == "link":
        smtp_server.wait_for(lambda m: len(m) >= limit)
    else:
        bot_api.wait_for(lambda m: len(m) >= limit)

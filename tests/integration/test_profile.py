"""The client profile (/me): passwordless sign-in, history, preferences, isolation.

Sign-in messages go through the real channel classes to the fake SMTP server
and the fake Bot API; the tests read the link or code from there, as a client
would from their mailbox or chat.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import (
    AuditLog,
    Client,
    ClientToken,
    DeliveryAttempt,
    Notification,
    OutboxEvent,
    utcnow,
)
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event

PUBLIC = "http://profile.test"


def make_settings(bot_api, smtp_server, **overrides) -> Settings:
    return Settings(secret_key="s" * 40, smtp_url=smtp_server.url, telegram_token=bot_api.token,
                    telegram_api_base=bot_api.url, telegram_bot_username="vestnik_fake_bot", public_url=PUBLIC,
                    **overrides)


@pytest.fixture
def settings(bot_api, smtp_server) -> Settings:
    return make_settings(bot_api, smtp_server)


@pytest.fixture
def app(settings, session_factory):
    app = create_app(settings, session_factory=session_factory, config={"TESTING": True})
    with session_factory() as s:
        s.add_all([
            Client(id=1, name="Анна", email="Anna@Example.com", telegram_chat_id="1001", locale="ru"),
            Client(id=2, name="Boris", email="boris@example.com", locale="en"),
        ])
        s.flush()
        for i, (who, status) in enumerate([(1, "sent"), (1, "failed"), (2, "sent")]):
            s.add(Notification(recipient_id=who, channel="telegram" if who == 1 else "email",
                               recipient_address="1001" if who == 1 else "boris@example.com",
                               event_type="lesson_cancelled", template_code="LESSON_CANCELLED", step=f"s{i}",
                               status=status, subject=None if who == 1 else "Lesson cancelled",
                               body=f"<b>Занятие</b> отменено #{i} для {who}"))
        s.commit()
    yield app
    messenger = app.extensions.get("vestnik_sign_in_messenger")
    if messenger is not None:
        messenger.close()


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def request_link(c, email: str, ip: str = "10.0.0.1"):
    page = c.get("/me/login", environ_base={"REMOTE_ADDR": ip})
    return c.post("/me/login", data={"email": email, "method": "link", "csrf_token": csrf(page.text)},
                  environ_base={"REMOTE_ADDR": ip})


def link_from_mail(smtp_server, address: str, nth: int = 1) -> str:
    mails = smtp_server.wait_for(lambda m: len([x for x in m if address.lower() in str(x["to"]).lower()]) >= nth)
    mine = [x for x in mails if address.lower() in str(x["to"]).lower()]
    return re.search(r"http://profile\.test(/me/login/t/[\w-]+)", mine[nth - 1]["text"]).group(1)


def sign_in(c, smtp_server, email: str = "anna@example.com", nth: int = 1):
    assert request_link(c, email).status_code == 200
    path = link_from_mail(smtp_server, email, nth)
    page = c.get(path)
    assert page.status_code == 200
    resp = c.post(path, data={"csrf_token": csrf(page.text)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/me/")
    return path


# ------------------------------------------------------------------ sign-in by email link


def test_email_link_signs_in_once_and_is_recorded_masked_in_history(app, smtp_server, session_factory):
    c = app.test_client()
    path = sign_in(c, smtp_server)
    home = c.get("/me/")
    assert home.status_code == 200 and "Анна" in home.text and "отменено #0" in home.text
    assert "#2 для 2" not in home.text  # Boris's notification

    other = app.test_client()
    page = other.get(path)
    assert page.status_code == 410  # used: the confirmation page says so
    assert other.post(path, data={"csrf_token": csrf(page.text)}).status_code == 410
    assert other.get("/me/").status_code == 302

    token = path.rsplit("/", 1)[1]
    with session_factory() as s:
        wait_until(lambda: s.scalar(select(Notification.status).where(
            Notification.event_type == "client_sign_in").execution_options(populate_existing=True)) == "sent",
            message="the sign-in row recorded as sent")
        n = s.scalars(select(Notification).where(Notification.event_type == "client_sign_in")).one()
        assert (n.channel, n.category, n.recipient_id, n.recipient_address) == ("email", "service", 1,
                                                                                "Anna@Example.com")
        assert token not in (n.body or "") and "••••" in n.body and token not in str(n.payload_json)
        assert s.scalars(select(DeliveryAttempt.outcome).where(DeliveryAttempt.notification_id == n.id)).all() == [
            "sent"]
        # The secret is stored hashed only.
        assert token not in str(s.execute(select(ClientToken.token_hash, ClientToken.code_hash)).all())
        assert "client.signed_in" in s.scalars(select(AuditLog.action).where(AuditLog.actor == "client:1")).all()


def test_expired_link_is_refused(app, smtp_server, session_factory):
    c = app.test_client()
    request_link(c, "anna@example.com")
    path = link_from_mail(smtp_server, "anna@example.com")
    with session_factory() as s:  # fifteen minutes pass
        s.execute(update(ClientToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    page = c.get(path)
    assert page.status_code == 410 and "устарела" in page.text
    assert c.post(path, data={"csrf_token": csrf(page.text)}).status_code == 410
    assert c.get("/me/").status_code == 302


def test_default_lifetime_is_fifteen_minutes(app, smtp_server, session_factory):
    request_link(app.test_client(), "anna@example.com")
    link_from_mail(smtp_server, "anna@example.com")
    with session_factory() as s:
        row = s.scalars(select(ClientToken)).one()
        assert row.expires_at - row.created_at == timedelta(minutes=15)


def test_unknown_and_known_addresses_get_the_same_answer(app, smtp_server):
    c = app.test_client()
    unknown = request_link(c, "nobody@example.com", ip="10.0.0.2")
    known = request_link(c, "anna@example.com", ip="10.0.0.3")
    strip = lambda html: re.sub(r'value="[^"]*"', "", html)  # noqa: E731 - CSRF tokens and the echoed address
    assert unknown.status_code == known.status_code == 200
    assert strip(unknown.text).replace("nobody", "X") == strip(known.text).replace("anna", "X")
    link_from_mail(smtp_server, "anna@example.com")
    assert len(smtp_server.messages()) == 1  # the unknown address was sent nothing
    # The code route too: both go to the code page, only a connected client gets a message.
    for email in ("nobody@example.com", "boris@example.com", "anna@example.com"):
        page = c.get("/me/login")
        resp = c.post("/me/login", data={"email": email, "method": "code", "csrf_token": csrf(page.text)})
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/me/login/code")


def test_sign_in_requests_are_throttled_per_address_and_per_ip(bot_api, smtp_server, session_factory):
    app = create_app(make_settings(bot_api, smtp_server, client_sign_in_per_address=3, client_sign_in_per_ip=5),
                     session_factory=session_factory, config={"TESTING": True})
    with session_factory() as s:
        s.add(Client(id=1, name="Анна", email="anna@example.com"))
        s.commit()
    c = app.test_client()
    for email in ("anna@example.com", "ghost@example.com"):  # known and unknown: the same limits, the same answers
        codes = [request_link(c, email, ip=f"10.1.{i}.1").status_code for i in range(4)]
        assert codes == [200, 200, 200, 429], email
    other = [request_link(c, f"user{i}@example.com", ip="10.9.9.9").status_code for i in range(6)]
    assert other == [200] * 5 + [429]
    assert "Слишком много попыток" in request_link(c, "new@example.com", ip="10.9.9.9").text
    assert request_link(c, "new@example.com", ip="10.9.9.10").status_code == 200  # another IP is fine
    smtp_server.wait_for(lambda m: len(m) >= 3)
    app.extensions["vestnik_sign_in_messenger"].close()
    assert len(smtp_server.messages()) == 3  # throttled requests sent nothing


# ------------------------------------------------------------------ sign-in by a code from the bot


def request_code(c, email: str):
    page = c.get("/me/login")
    return c.post("/me/login", data={"email": email, "method": "code", "csrf_token": csrf(page.text)})


def test_code_from_the_bot_signs_in_once(app, bot_api):
    c = app.test_client()
    request_code(c, "anna@example.com")
    with c.session_transaction() as sess:
        challenge = sess["vestnik_sign_in_challenge"]
    [message] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert message["chat_id"] == "1001"
    code = re.search(r"<b>(\d{6})</b>", message["text"]).group(1)
    page = c.get("/me/login/code")
    wrong = "000000" if code != "000000" else "111111"
    assert c.post("/me/login/code", data={"code": wrong, "csrf_token": csrf(page.text)}).status_code == 401
    resp = c.post("/me/login/code", data={"code": code, "csrf_token": csrf(page.text)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/me/")
    assert "Анна" in c.get("/me/").text

    again = app.test_client()  # the same challenge and code once more: refused
    with again.session_transaction() as sess:
        sess["vestnik_sign_in_challenge"] = challenge
    page = again.get("/me/login/code")
    assert again.post("/me/login/code", data={"code": code, "csrf_token": csrf(page.text)}).status_code == 401


def test_five_wrong_codes_kill_the_challenge(app, bot_api):
    c = app.test_client()
    request_code(c, "anna@example.com")
    [message] = bot_api.wait_for(lambda m: len(m) >= 1)
    code = re.search(r"<b>(\d{6})</b>", message["text"]).group(1)
    page = c.get("/me/login/code")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert c.post("/me/login/code", data={"code": wrong, "csrf_token": csrf(page.text)}).status_code == 401
    assert c.post("/me/login/code", data={"code": code, "csrf_token": csrf(page.text)}).status_code == 401


# ------------------------------------------------------------------ the profile


def test_logout_kills_the_session_even_for_a_copied_cookie(app, smtp_server):
    c = app.test_client()
    sign_in(c, smtp_server)
    cookie = c.get_cookie("vestnik_session")
    assert cookie.http_only and cookie.same_site == "Lax"
    page = c.get("/me/")
    assert c.post("/me/logout", data={"csrf_token": csrf(page.text)}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("vestnik_session", cookie.value)
    assert thief.get("/me/").status_code == 302


def test_forms_need_csrf(app, smtp_server, session_factory):
    c = app.test_client()
    sign_in(c, smtp_server)
    for path, data in [("/me/settings", {"email": "on"}), ("/me/logout", {}), ("/me/telegram/connect", {}),
                       ("/me/telegram/disconnect", {}), ("/me/language", {"lang": "en"}),
                       ("/me/login", {"email": "anna@example.com", "method": "link"})]:
        assert c.post(path, data=data).status_code == 400, path
    with session_factory() as s:
        assert s.get(Client, 1).notifications_email_enabled is True


def test_history_pages(app, smtp_server, session_factory):
    with session_factory() as s:
        s.add_all(Notification(recipient_id=1, channel="email", recipient_address="a@x", event_type="news",
                               template_code="NEWS", step=f"p{i}", status="sent", body=f"news item {i:02d}",
                               created_at=utcnow() + timedelta(seconds=i + 10)) for i in range(25))
        s.commit()
    c = app.test_client()
    sign_in(c, smtp_server)
    first = c.get("/me/").text
    assert "news item 24" in first and "news item 05" in first and "news item 04" not in first
    assert 'rel="next"' in first
    second = c.get("/me/?page=2").text
    assert "news item 04" in second and "news item 24" not in second and 'rel="prev"' in second
    assert "channel-email" in second and "channel-telegram" in second
    odd = c.get("/me/?page=abc")
    assert odd.status_code == 400 and "page: must be a whole number" in odd.text


def test_preferences_are_audited_and_apply_to_the_next_event(app, smtp_server, session_factory, settings):
    c = app.test_client()
    sign_in(c, smtp_server)
    page = c.get("/me/")
    resp = c.post("/me/settings", data={"email": "on", "service": "on", "lang": "en",
                                        "csrf_token": csrf(page.text)})  # Telegram switched off
    assert resp.status_code == 302
    home = c.get("/me/").text
    assert "Settings saved" in home and '<html lang="en">' in home  # the UI follows the new language
    with session_factory() as s:
        client = s.get(Client, 1)
        assert (client.notifications_telegram_enabled, client.locale) == (False, "en")
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "client.preferences")).all()
        assert entry.actor == "client:1" and entry.details["changes"]["notifications_telegram_enabled"] == [True,
                                                                                                            False]
        install_default_templates(s)
        emit(s, "lesson_cancelled", recipients=[1], data={"lesson_title": "Robotics",
                                                        "starts_at": "2026-11-25T16:00:00+03:00"})
        s.commit()
        event_id = s.scalar(select(OutboxEvent.id))
    result = handle_event(session_factory, build_channels(settings), event_id)
    assert [channel for _, channel, _, _ in result.created] == ["email"]


def test_language_switcher_works_signed_out(app):
    c = app.test_client()
    page = c.get("/me/login")
    assert '<html lang="ru">' in page.text
    c.post("/me/language", data={"lang": "en", "next": "https://evil.test/", "csrf_token": csrf(page.text)})
    assert '<html lang="en">' in c.get("/me/login").text and "Email me a link" in c.get("/me/login").text


# ------------------------------------------------------------------ isolation


#: URL arguments of /me and where another client's value comes from; a new argument fails the test until added.
ID_ARGUMENTS = {"notification_id": "notification"}
#: rules whose argument is a bearer secret, not an id: holding it is the proof of identity
BEARER_RULES = {"/me/login/t/<token>"}


def test_no_profile_url_reaches_another_clients_data(app, smtp_server, session_factory):
    with session_factory() as s:
        annas = s.scalars(select(Notification.id).where(Notification.recipient_id == 1)).all()
    boris = app.test_client()
    sign_in(boris, smtp_server, "boris@example.com")
    token = csrf(boris.get("/me/").text)
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/me")]
    with_ids = [r for r in rules if r.arguments and r.rule not in BEARER_RULES]
    assert with_ids, "the profile has URLs with ids; the walk must cover them"
    for rule in with_ids:
        assert set(rule.arguments) <= set(ID_ARGUMENTS), f"{rule.rule}: add its arguments to ID_ARGUMENTS"
        for nid in annas:
            url = rule.rule.replace("<int:notification_id>", str(nid))
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                resp = boris.open(url, method=method, data={"csrf_token": token})
                assert resp.status_code == 404, (method, url, resp.status_code)
                assert "отменено #0" not in resp.text and "отменено #1" not in resp.text
    for rule in rules:  # the pages without ids show Boris's own data only
        if not rule.arguments and "GET" in rule.methods:
            resp = boris.get(rule.rule)
            assert "Анна" not in resp.text and "для 1" not in resp.text, rule.rule
    own = boris.get("/me/").text
    assert "#2 для 2" in own
    with session_factory() as s:
        boris_id = s.scalar(select(Notification.id).where(Notification.recipient_id == 2))
    assert boris.get(f"/me/notifications/{boris_id}").status_code == 200


def test_session_cookie_is_secure_behind_https(bot_api, smtp_server, session_factory):
    app = create_app(make_settings(bot_api, smtp_server).replace(public_url="https://profile.test"),
                     session_factory=session_factory, config={"TESTING": True})
    c = app.test_client()
    c.get("/me/login")
    cookie = c.get_cookie("vestnik_session")
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax"


def test_a_bad_address_is_explained(app):
    c = app.test_client()
    page = c.get("/me/login")
    resp = c.post("/me/login", data={"email": "not an address", "method": "link", "csrf_token": csrf(page.text)})
    assert resp.status_code == 400 and "anna@example.com" in resp.text


def test_old_attempts_and_long_expired_secrets_are_cleaned_up(app, smtp_server, session_factory):
    from vestnik.shared.models import AttemptCounter

    long_ago = utcnow() - timedelta(days=3)
    with session_factory() as s:
        s.add(AttemptCounter(scope="ip:192.0.2.1", count=7, window_ends_at=long_ago))
        s.add(ClientToken(client_id=2, purpose="session", token_hash="0" * 64, created_at=long_ago,
                          expires_at=long_ago + timedelta(days=1)))
        s.commit()
    request_link(app.test_client(), "anna@example.com")
    link_from_mail(smtp_server, "anna@example.com")  # the link is stored (and old secrets cleaned) before it is sent
    with session_factory() as s:
        scopes = sorted(s.scalars(select(AttemptCounter.scope)).all())
        assert len(scopes) == 2 and scopes[0].startswith("address:") and scopes[1] == "ip:10.0.0.1"
        assert s.scalars(select(ClientToken.client_id)).all() == [1]  # Boris's dead session is gone

"""A webhook URL is checked wherever it is saved (API, CSV, admin, profile), refused naming the field,
private targets refused unless VESTNIK_WEBHOOK_ALLOW_PRIVATE; the admin edits the webhook's templates."""

from __future__ import annotations

import io

from tests.integration.test_admin import login, make_admin_app, token
from tests.integration.test_api import auth, make_app, new_key
from tests.integration.test_profile import csrf, make_settings, sign_in
from vestnik.shared.clients_import import import_clients
from vestnik.shared.config import Settings
from vestnik.shared.models import Client
from vestnik.webapp import create_app
from vestnik.workers.channels import build_channels

PUBLIC_HOOK = "https://93.184.216.34/vestnik"  # a public literal address: no DNS needed


def test_the_api_refuses_a_bad_or_private_webhook_url_naming_the_field(pg_url):
    from vestnik.shared.db import make_engine, make_session_factory

    factory = make_session_factory(make_engine(pg_url))
    app = make_app(factory)  # VESTNIK_WEBHOOK_ALLOW_PRIVATE off
    _, raw = new_key(factory)
    c = app.test_client()
    bad = c.put("/api/v1/clients/5", headers=auth(raw), json={"webhook_url": "ftp://crm.example.com/x"})
    assert bad.status_code == 422 and [p["field"] for p in bad.get_json()["problems"]] == ["webhook_url"]
    private = c.put("/api/v1/clients/5", headers=auth(raw), json={"webhook_url": "http://10.0.0.7/hook"})
    assert private.status_code == 422
    [problem] = private.get_json()["problems"]
    assert problem["field"] == "webhook_url" and "VESTNIK_WEBHOOK_ALLOW_PRIVATE" in problem["message"]
    ok = c.put("/api/v1/clients/5", headers=auth(raw), json={"webhook_url": PUBLIC_HOOK, "webhook_enabled": False})
    assert ok.status_code == 201, ok.get_json()
    view = c.get("/api/v1/clients/5", headers=auth(raw)).get_json()
    assert (view["webhook_url"], view["webhook_enabled"], view["unreachable"]["webhook"]) == (PUBLIC_HOOK, False,
                                                                                             None)
    allowed = make_app(factory, webhook_allow_private=True)
    assert allowed.test_client().put("/api/v1/clients/6", headers=auth(raw),
                                     json={"webhook_url": "http://127.0.0.1:9/hook"}).status_code == 201


def test_the_csv_import_reports_a_bad_webhook_url_by_line_and_field(session_factory):
    build_channels(Settings())  # private targets refused
    csv = ("id,name,webhook_url\n"
           f"1,Анна,{PUBLIC_HOOK}\n"
           "2,Bob,http://192.168.1.5/hook\n"
           "3,Вера,not a url\n")
    with session_factory() as s:
        report = import_clients(s, io.StringIO(csv))
        s.commit()
        assert s.get(Client, 1).address("webhook") == PUBLIC_HOOK
        assert s.get(Client, 2) is None and s.get(Client, 3) is None
    assert [(line, problem.split(":")[0]) for line, problem in report.errors] == [(3, "webhook_url"),
                                                                                 (4, "webhook_url")]
    assert "private address" in report.errors[0][1]


def test_the_admin_edits_a_clients_webhook_url_and_refuses_a_bad_one(session_factory):
    app = make_admin_app(session_factory)
    c = app.test_client()
    login(c)
    page = c.get("/admin/client/edit/?id=1")
    assert page.status_code == 200 and "Webhook URL" in page.text
    form = {"csrf_token": token(page.text), "locale": "ru", "timezone": "Europe/Moscow",
            "allow_service_notifications": "y", "set_address_email": "anna@example.com",
            "set_address_telegram": "1001", "enabled_email": "y", "enabled_telegram": "y", "enabled_webhook": "y"}
    refused = c.post("/admin/client/edit/?id=1", data={**form, "set_address_webhook": "http://127.0.0.1/x"})
    assert "Webhook URL:" in refused.text and "VESTNIK_WEBHOOK_ALLOW_PRIVATE" in refused.text
    with session_factory() as s:
        assert s.get(Client, 1).address("webhook") is None
    saved = c.post("/admin/client/edit/?id=1", data={**form, "set_address_webhook": PUBLIC_HOOK})
    assert saved.status_code == 302
    with session_factory() as s:
        assert s.get(Client, 1).address("webhook") == PUBLIC_HOOK
    details = c.get("/admin/client/details/?id=1").text
    assert PUBLIC_HOOK in details and "Webhook reachability" in details
    # The webhook's templates are edited like the others: a shipped default opens in the editor.
    templates = c.get("/admin/template/?search=LESSON_CANCELLED").text
    assert "webhook" in templates


def test_the_profile_shows_and_saves_the_webhook_url(bot_api, smtp_server, session_factory):
    app = create_app(make_settings(bot_api, smtp_server), session_factory=session_factory, config={"TESTING": True})
    with session_factory() as s:
        s.add(Client(id=1, name="Анна", email="anna@example.com", locale="en"))
        s.commit()
    c = app.test_client()
    sign_in(c, smtp_server)
    page = c.get("/me/")
    assert 'id="address-webhook"' in page.text and "Webhook notifications" in page.text
    refused = c.post("/me/address", data={"csrf_token": csrf(page.text), "channel": "webhook", "address": "http://[::1]/x"},
                     follow_redirects=True)
    assert "Webhook URL:" in refused.text and "loopback" in refused.text
    saved = c.post("/me/address", data={"csrf_token": csrf(page.text), "channel": "webhook", "address": PUBLIC_HOOK},
                   follow_redirects=True)
    assert "Address saved." in saved.text and PUBLIC_HOOK in saved.text
    with session_factory() as s:
        assert s.get(Client, 1).address("webhook") == PUBLIC_HOOK
    # The switch now applies (it was disabled without an address); switching it off is the client's choice.
    off = c.post("/me/settings", data={"csrf_token": csrf(saved.text), "email": "on", "service": "on"})
    assert off.status_code == 302
    with session_factory() as s:
        anna = s.get(Client, 1)
        assert anna.channel_enabled("webhook") is False and anna.channel_enabled("email") is True
    telegram = {"csrf_token": csrf(page.text), "channel": "telegram", "address": "1"}  # bound by the bot only
    assert c.post("/me/address", data=telegram).status_code == 404

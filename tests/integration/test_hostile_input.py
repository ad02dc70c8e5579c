"""Hostile input: template injection, markup and header injection, CSRF, sessions, webhooks, filters.

Each test feeds what an attacker (or a careless CRM) would send through the
real path: the admin's save check (``check_template``), the real render and
channels against the fakes (the SMTP server shows what went on the wire), the
Flask app built by ``create_app`` with every blueprint it has.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.errors import EventValidationError, TemplateError
from vestnik.shared.models import AdminUser, AuditLog, Client, Notification, NotificationTemplate, OutboxEvent
from vestnik.shared.rendering import MAX_OUTPUT_CHARS, render
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.signatures import sign
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.base import DeliveryError, RenderedMessage
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event
from vestnik.workers.template_checks import check_template

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}

# ---------------------------------------------------------------------- server-side template injection

#: Attempts an admin (or a stolen admin account) could type into a template.  Each must be
#: refused when the template is saved; render-time limits are tested separately below.
SSTI = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "class-of-a-variable": "{{ lesson_title.__class__.__init__.__globals__ }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner": "{{ joiner.__init__.__globals__ }}",
    "namespace": "{% set ns = namespace(x=1) %}{{ ns.__init__.__globals__ }}",
    "lipsum": "{{ lipsum.__globals__['os'] }}",
    "self-internals": "{{ self._TemplateReference__context }}",
    "range-globals": "{{ range.__globals__ }}",
    "attr-filter": "{{ lesson_title|attr('__class__') }}",
    "getitem-dunder": "{{ lesson_title['__class__'] }}",
    "format-attribute": "{{ '{0.__class__.__base__}'.format(lesson_title) }}",
    "format-map": "{{ '{a.__class__}'.format_map({'a': lesson_title}) }}",
    "config": "{{ config.items() }}",
    "request": "{{ request.environ }}",
    "huge-range": "{% for i in range(10**9) %}x{% endfor %}",
    "nested-loops": "{% set r = range(1000) %}{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}"
                    "{% endfor %}{% endfor %}",
    "string-times": "{{ 'x' * 10**9 }}",
    "list-times": "{{ ([1] * 10**8)|length }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "big-product": "{% set a = 10 ** 1000 %}{% set b = a * a * a * a * a %}{{ b * b }}",
    "percent-width": "{{ '%999999999d' % 1 }}",
    "percent-star": "{{ '%*d' % (999999999, 1) }}",
    "brace-width": "{{ '{:>999999999}'.format(1) }}",
    "brace-nested-width": "{{ '{:>{w}}'.format(1, w=999999999) }}",
    "center-method": "{{ 'x'.center(999999999) }}",
    "center-filter": "{{ 'x'|center(999999999) }}",
    "batch-filter": "{{ [1]|batch(999999999, 'x')|list }}",
    "replace-growth": "{{ ('x' * 1000).replace('x', 'y' * 1000) }}",
    "join-growth": "{{ ('x' * 1000).join(range(1000)|map('string')) }}",
    "concat-doubling": "{% set a = 'x' * 50000 %}{% set a = a ~ a ~ a %}{{ a|length }}",
    "macro-fork-bomb": "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}",
    "capture-growth": "{% set big %}{% for i in range(1000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}"
                      "{% endfor %}{% endset %}{{ big|length }}",
    "output-flood": "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}",
    "javascript-link": '<a href="javascript:alert(document.cookie)">pay</a> {{ lesson_title }}',
    "javascript-link-obfuscated": '<a href=" JaVa&#09;ScRiPt:alert(1)">pay</a> {{ lesson_title }}',
    "data-link": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>{{ lesson_title }}',
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("channel", ["telegram", "email"])
@pytest.mark.parametrize("name", list(SSTI))
def test_template_injection_is_refused_at_save(name, channel):
    problems = check_template("LESSON_CANCELLED", channel, "Урок {{ lesson_title }}", SSTI[name])
    assert problems, f"{name} was accepted for {channel}"
    assert all(field == "body" for field, _ in problems)


def test_self_reveals_nothing():
    # `self` is Jinja's block reference: harmless, and no Python internals come out of it.
    out = render("{{ self }}", {}, html_mode=False)
    assert "0x" not in out and "jinja2" not in out and "__" not in out


RENDER_LIMITS = {
    "nested-loops": "loop iterations and calls",
    "macro-fork-bomb": "(loop iterations and calls|ran longer than)",
    "string-times": "repeating builds more than",
    "power": "bits",
    "big-product": "bits",
    "percent-width": "format width",
    "brace-nested-width": "nested fields in a format spec are not allowed",
    "center-filter": "is over the limit",
    "replace-growth": "str.replace()",
    "join-growth": "str.join()",
    "concat-doubling": "the limit is",
    "capture-growth": "produced more than",
    "output-flood": f"longer than {MAX_OUTPUT_CHARS} characters",
}


@pytest.mark.timeout(60)  # a safety net only: a failing bound shows up as a hang, not as a figure
@pytest.mark.parametrize("name", list(RENDER_LIMITS))
def test_render_stops_at_a_named_limit(name):
    with pytest.raises(TemplateError, match=RENDER_LIMITS[name]):
        render(SSTI[name], {"lesson_title": "x"}, html_mode=True)


def test_ordinary_templates_stay_well_within_the_limits():
    source = ("{% for row in rows %}{{ loop.index }}. {{ row.name|title }} — {{ row.amount|money('RUB') }}\n"
              "{% endfor %}{{ '%05.1f' % 3.14159 }} {{ '{:>8}'.format('x') }} {{ ', '.join(['a', 'b']) }} "
              "{{ '%d руб.'|format(150000) }} {{ rows|map(attribute='amount')|select('gt', 150000)|list|length }} "
              "{{ rows|sum(attribute='amount') }}")
    rows = [{"name": f"item {i}", "amount": i * 10} for i in range(300)]
    out = render(source, {"rows": rows}, html_mode=True)
    assert out.count("\n") == 300 and "300. Item 299" in out and "003.1" in out
    assert "150000 руб." in out and out.endswith(" 0 448500")


# ---------------------------------------------------------------------- through the real delivery path


@pytest.fixture
def rig(session_factory, bot_api, smtp_server):
    with session_factory() as s:
        install_default_templates(s)
        s.commit()
    settings = Settings(telegram_token=bot_api.token, telegram_api_base=bot_api.url, smtp_url=smtp_server.url,
                        email_from="Школа <school@example.com>", telegram_chat_rate_per_s=1000)
    channels = build_channels(settings)
    delivery = Delivery(session_factory, channels, settings)
    yield session_factory, channels, delivery
    for channel in channels.values():
        channel.close()


def _deliver(rig, data, *, name="Анна", email="anna@example.com", chat="1001") -> dict[str, Notification]:
    factory, channels, delivery = rig
    with factory() as s:
        client_id = (s.scalar(select(Client.id).order_by(Client.id.desc()).limit(1)) or 0) + 1
        s.add(Client(id=client_id, name=name, email=email, telegram_chat_id=chat, locale="ru"))
        s.commit()
        event_id = emit(s, "lesson_cancelled", recipients=[client_id], data=data)
        s.commit()
    result = handle_event(factory, channels, event_id)
    for nid, *_ in result.created:
        delivery.deliver(nid)
    with factory() as s:
        return {n.channel: n for n in s.scalars(select(Notification).where(Notification.recipient_id == client_id))}


def _set_body(factory, channel: str, body: str, subject: str | None = None) -> None:
    """Store a template as an old row would be (before the checks existed): bypassing the admin."""
    with factory() as s:
        t = s.scalars(select(NotificationTemplate).where(
            NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == channel,
            NotificationTemplate.locale == "ru")).one()
        t.body = body
        if subject is not None:
            t.subject = subject
        t.updated_by = "admin:1"
        s.commit()


@pytest.mark.timeout(60)
def test_a_template_that_blows_a_limit_fails_only_its_own_notification(rig, bot_api, smtp_server):
    _set_body(rig[0], "telegram", SSTI["nested-loops"])
    rows = _deliver(rig, LESSON)
    assert rows["telegram"].status == "failed" and "loop iterations" in rows["telegram"].last_error
    assert rows["telegram"].last_error.startswith("render failed")
    assert rows["email"].status == "sent" and len(smtp_server.messages()) == 1
    assert bot_api.messages() == []


def test_jinja_syntax_in_client_names_and_event_data_is_rendered_literally(rig, bot_api, smtp_server):
    hostile = "{{ 7*7 }}{% for x in range(3) %}loop{% endfor %}{{ ''.__class__ }}"
    rows = _deliver(rig, {**LESSON, "lesson_title": hostile, "reason": "{{ config }}"}, name=hostile)
    assert rows["telegram"].status == "sent" and rows["email"].status == "sent"
    [tg] = bot_api.messages()
    [mail] = smtp_server.messages()
    for text in (tg["text"], mail["html"], mail["text"], mail["subject"]):
        assert "{{ 7*7 }}" in text and "49" not in text and "looploop" not in text
    assert "{{ config }}" in tg["text"] and "Здравствуйте, {{ 7*7 }}" in mail["html"]


SCRIPT = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'


def test_markup_in_variables_is_escaped_in_html_email_and_telegram(rig, bot_api, smtp_server):
    rows = _deliver(rig, {**LESSON, "lesson_title": SCRIPT, "reason": "</b><b onclick=alert(4)>"}, name=SCRIPT)
    assert rows["telegram"].status == "sent" and rows["email"].status == "sent"
    [tg] = bot_api.messages()
    [mail] = smtp_server.messages()
    for html in (tg["text"], mail["html"]):
        assert "<script" not in html and "<img" not in html and "<b onclick" not in html and "<a " not in html
        assert "&lt;script&gt;" in html
    assert "<script" in mail["text"]  # the plain-text part shows the name as typed: text is not markup
    assert "Content-Type: text/html" in mail["raw"].decode("ascii", "replace")


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:alert(1)",
                                 "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)"])
def test_unsafe_links_from_variables_are_refused(rig, bot_api, smtp_server, url):
    factory = rig[0]
    _set_body(factory, "telegram", '<a href="{{ lesson_title }}">open</a>')
    _set_body(factory, "email", '<p><a href="{{ lesson_title }}">open</a></p>')
    rows = _deliver(rig, {**LESSON, "lesson_title": url})
    for channel in ("telegram", "email"):
        assert rows[channel].status == "failed" and "refused" in rows[channel].last_error, channel
    assert bot_api.messages() == [] and smtp_server.messages() == []


def test_safe_links_from_variables_go_out(rig, bot_api, smtp_server):
    _set_body(rig[0], "email", '<p><a href="{{ lesson_title }}">open</a></p>')
    rows = _deliver(rig, {**LESSON, "lesson_title": "https://school.example/l/1?a=1&b=2"})
    assert rows["email"].status == "sent"
    assert 'href="https://school.example/l/1?a=1&amp;b=2"' in smtp_server.messages()[0]["html"]


@pytest.mark.parametrize("data", [{**LESSON, "lesson_title": "X\x00Y"}, {**LESSON, "reason": "\x00"}])
def test_nul_in_event_data_is_a_clear_error_at_emit_not_a_failed_crm_commit(session_factory, data):
    with session_factory() as s:
        with pytest.raises(EventValidationError, match="NUL"):
            emit(s, "lesson_cancelled", recipients=[1], data=data)
        with pytest.raises(EventValidationError, match="NUL"):
            emit(s, "lesson_cancelled", recipients=[1], data=LESSON, key="lesson:\x00")
        s.commit()  # the CRM's own transaction is unharmed


def test_url_fields_refuse_javascript_at_emit(session_factory):
    with session_factory() as s, pytest.raises(EventValidationError, match="payment_url"):
        emit(s, "invoice_created", recipients=[1], data={"payment_url": "javascript:alert(1)", "amount": "1",
                                                          "currency": "RUB", "invoice_number": "1",
                                                          "due_date": "2026-12-01T00:00:00+03:00"})


# ---------------------------------------------------------------------- CR/LF on the wire


@pytest.mark.parametrize("title", ["X\r\nBcc: evil@evil.test", "X\nBcc: evil@evil.test", "X\rBcc: evil@evil.test"])
def test_crlf_from_data_in_the_subject_never_reaches_the_wire(rig, smtp_server, title):
    rows = _deliver(rig, {**LESSON, "lesson_title": title})
    assert rows["email"].status == "failed" and "more than one line" in rows["email"].last_error
    assert smtp_server.messages() == []


@pytest.mark.parametrize("title", ["X\u2028Bcc: evil@evil.test", "X\x85Bcc: evil@evil.test", "X\x0bBcc: e@evil.test",
                                   "X\x0cBcc: e@evil.test", "X\u2029Bcc: e@evil.test", "X\x1cBcc: e@evil.test"])
def test_other_line_breaks_in_the_subject_add_no_header(rig, smtp_server, title):
    rows = _deliver(rig, {**LESSON, "lesson_title": title})
    for m in smtp_server.messages():
        assert m["rcpt_tos"] == ["anna@example.com"]
        assert m["message"]["Bcc"] is None
        assert not re.search(rb"\r\nBcc:", m["raw"], re.IGNORECASE)
    assert rows["email"].status in ("sent", "failed")


@pytest.mark.parametrize("email", [
    "anna@example.com\r\nBcc: evil@evil.test",
    "anna@example.com\nRCPT TO:<evil@evil.test>",
    "anna@example.com>\r\nRCPT TO:<evil@evil.test",
    "anna@example.com, evil@evil.test",
    "anna@example.com;evil@evil.test",
    "Anna <anna@example.com>, <evil@evil.test>",
])
def test_crlf_and_lists_in_the_recipient_address_add_no_recipient(rig, smtp_server, email):
    rows = _deliver(rig, LESSON, email=email)
    assert rows["email"].status == "failed"
    assert smtp_server.messages() == [] and smtp_server.connections <= 1


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "Hi\r\nBcc: evil@evil.test"),
    ("header", "yes\r\nBcc: evil@evil.test"),
    ("header-name", "X-Evil\r\nBcc"),
    ("from", "School <school@example.com>\r\nBcc: evil@evil.test"),
])
def test_crlf_in_headers_is_refused_before_anything_is_sent(smtp_server, field, value):
    from vestnik.shared.config import parse_smtp_url

    channel = EmailChannel(smtp=parse_smtp_url(smtp_server.url),
                           email_from=value if field == "from" else "School <school@example.com>")
    headers = {"X-Tag": value} if field == "header" else {value: "x"} if field == "header-name" else {}
    message = RenderedMessage(notification_id=1, text="hi", subject=value if field == "subject" else "Hi",
                              headers=headers)
    with pytest.raises(DeliveryError) as caught:
        channel.send("anna@example.com", message)
    channel.close()
    assert caught.value.outcome.value == "permanent"
    assert smtp_server.messages() == [] and smtp_server.connections == 0


# ---------------------------------------------------------------------- the web app

PASSWORD = "correct horse battery"
WEBHOOK_SECRET = "whsec-hostile-0123456789"


@pytest.fixture
def app(session_factory):
    app = create_app(Settings(secret_key="k" * 32, webhook_secrets=WEBHOOK_SECRET), session_factory=session_factory,
                     config={"TESTING": True})
    with session_factory() as s:
        install_default_templates(s)
        s.add_all([
            AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"),
            Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"),
        ])
        s.flush()
        for i, status in enumerate(["sent", "failed"]):
            s.add(Notification(recipient_id=1, channel="telegram", recipient_address="1001", key="lesson:1",
                               event_type="lesson_cancelled", template_code="LESSON_CANCELLED", step=f"s{i}",
                               status=status, body="text", last_error="boom" if status == "failed" else None))
        s.add(OutboxEvent(event_type="lesson_cancelled", recipients=[1], data=LESSON, key="lesson:1"))
        s.add(AuditLog(actor="admin:1", action="template.update", object_type="template", object_id="1"))
        s.commit()
    return app


def token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def login(client) -> None:
    page = client.get("/admin/login")
    resp = client.post("/admin/login", data={"email": "admin@school.test", "password": PASSWORD,
                                             "csrf_token": token(page.text)})
    assert resp.status_code == 302


#: Endpoints that authenticate by signature, not by session, and are documented CSRF-exempt.
# Machine callers: signed webhooks, one-click unsubscribe (the URL's token), the HTTP API (an API key, no cookies).
SIGNED_MACHINE_ENDPOINTS = re.compile(r"(^|\.)webhooks\.|(^|\.)unsubscribe\.|(^|\.)api\.")


def _mutating_rules(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            yield rule, method, re.sub(r"<[^>]+>", "1", rule.rule)


@pytest.mark.parametrize("signed_in", [True, False], ids=["admin", "anonymous"])
def test_every_mutating_endpoint_refuses_a_request_without_a_valid_csrf_token(app, signed_in):
    c = app.test_client()
    if signed_in:
        login(c)
    checked, exempt = [], []
    for rule, method, path in _mutating_rules(app):
        if SIGNED_MACHINE_ENDPOINTS.search(rule.endpoint):
            exempt.append(rule.endpoint)
            continue
        for data in ({"x": "1"}, {"csrf_token": "forged-token", "x": "1"}):
            resp = c.open(path, method=method, data=data)
            assert resp.status_code == 400, f"{method} {rule.rule} ({rule.endpoint}) answered {resp.status_code}"
        resp = c.open(path, method=method, json={"x": 1}, headers={"X-CSRFToken": "forged"})
        assert resp.status_code == 400, f"{method} {rule.rule} with JSON"
        checked.append(f"{method} {rule.rule}")
    assert len(checked) >= 8 and exempt, (checked, exempt)


def test_only_signed_machine_endpoints_are_csrf_exempt(app):
    from vestnik.webapp import csrf

    exempt = set(csrf._exempt_views) | {f"{bp}." for bp in csrf._exempt_blueprints}
    assert exempt and all(SIGNED_MACHINE_ENDPOINTS.search(view) for view in exempt), exempt


def test_a_stolen_session_cookie_and_its_csrf_token_are_useless_after_logout(app, session_factory):
    c = app.test_client()
    login(c)
    page = c.get("/admin/notification/")
    stolen_cookie, stolen_token = c.get_cookie("vestnik_session").value, token(page.text)
    assert c.post("/admin/logout", data={"csrf_token": stolen_token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("vestnik_session", stolen_cookie)
    for path in ("/admin/", "/admin/notification/", "/admin/client/details/?id=1", "/admin/template/new/"):
        assert thief.get(path).status_code == 302, path
    resp = thief.post("/admin/notification/action/", data={"action": "retry", "rowid": ["2"],
                                                           "csrf_token": stolen_token})
    assert resp.status_code in (302, 400, 403)
    with session_factory() as s:
        assert s.scalar(select(Notification.status).where(Notification.id == 2)) == "failed"
        assert s.scalars(select(AuditLog.action).where(AuditLog.action == "notification.retry")).all() == []


# ---------------------------------------------------------------------- webhooks (what test_webhooks lacks)

PAYMENT = {"event_id": "bank-evt-9", "payment_id": "p-9", "invoice_id": "9", "client_id": 1, "amount": "100.00",
           "currency": "RUB", "status": "succeeded"}


def _events(factory):
    with factory() as s:
        return s.scalars(select(OutboxEvent).where(OutboxEvent.initiator.like("webhook:%"))).all()


def test_a_replayed_signed_request_is_a_duplicate_and_emits_nothing_more(app, session_factory):
    c = app.test_client()
    body = json.dumps(PAYMENT).encode()
    headers = {"Content-Type": "application/json", **sign(WEBHOOK_SECRET, body)}
    first = c.post("/webhooks/payments", data=body, headers=headers)
    replays = [c.post("/webhooks/payments", data=body, headers=headers) for _ in range(3)]  # byte for byte
    assert first.json["status"] == "accepted"
    assert [r.json["status"] for r in replays] == ["duplicate"] * 3
    assert len(_events(session_factory)) == 1


@pytest.mark.parametrize(("case", "mangle"), [
    ("only the timestamp", lambda h: {k: v for k, v in h.items() if k != "X-Vestnik-Signature"}),
    ("only the signature", lambda h: {k: v for k, v in h.items() if k != "X-Vestnik-Timestamp"}),
    ("timestamp not a number", lambda h: {**h, "X-Vestnik-Timestamp": "yesterday"}),
    ("sha1 prefix", lambda h: {**h, "X-Vestnik-Signature": h["X-Vestnik-Signature"].replace("sha256=", "sha1=")}),
    ("no prefix", lambda h: {**h, "X-Vestnik-Signature": h["X-Vestnik-Signature"].removeprefix("sha256=")}),
    ("empty signature", lambda h: {**h, "X-Vestnik-Signature": "sha256="}),
    ("signature of another timestamp", lambda h: {**h, "X-Vestnik-Timestamp": str(int(time.time()) - 1)}),
    ("uppercase hex", lambda h: {**h, "X-Vestnik-Signature": h["X-Vestnik-Signature"].upper()}),
])
@pytest.mark.parametrize("path", ["/webhooks/payments", "/webhooks/bookings"])
def test_mangled_signature_headers_get_401_and_emit_nothing(app, session_factory, case, mangle, path):
    body = json.dumps(PAYMENT).encode()
    headers = mangle(sign(WEBHOOK_SECRET, body, int(time.time()) - 5))
    resp = app.test_client().post(path, data=body, headers={"Content-Type": "application/json", **headers})
    assert resp.status_code == 401, case
    assert WEBHOOK_SECRET not in resp.text
    assert _events(session_factory) == []


@pytest.mark.parametrize("path", ["/webhooks/payments", "/webhooks/bookings", "/webhooks/telegram"])
def test_huge_bodies_get_413_on_every_webhook(app, session_factory, path):
    c = app.test_client()
    raw = json.dumps({**PAYMENT, "pad": "x" * 200_000}).encode()
    headers = {"Content-Type": "application/json", **sign(WEBHOOK_SECRET, raw),
               "X-Telegram-Bot-Api-Secret-Token": app.extensions["vestnik_settings"].telegram_webhook_secret}
    assert c.post(path, data=raw, headers=headers).status_code == 413
    over_app_limit = b"x" * (3 * 1024 * 1024)
    assert c.post(path, data=over_app_limit, headers=headers).status_code == 413
    assert _events(session_factory) == []


def test_a_wrong_telegram_secret_token_gets_401(app, session_factory):
    update = {"update_id": 1, "callback_query": {"id": "cb", "data": "rate:B-1:5", "from": {"id": 1001},
                                                 "message": {"chat": {"id": 1001}}}}
    right = app.extensions["vestnik_settings"].telegram_webhook_secret
    for wrong in ("", "x", right[:-1], right + "x", right.upper()):
        resp = app.test_client().post("/webhooks/telegram", json=update,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": wrong})
        assert resp.status_code == 401, wrong
    assert _events(session_factory) == []


# ---------------------------------------------------------------------- admin list filters, search and sort

HOSTILE_VALUES = ["%", "%%_%_\\", "' OR 1=1 --", "1; DROP TABLE clients; --", "x" * 5000, "Ωμέγα 🤖 𝔘", "a\x00b",
                  "99999999999999999999999", "-1", "<script>alert(1)</script>",
                  # odd rather than hostile: what a typo or a bad bookmark sends
                  "", "abc", "2026-13-45 25:61:00", "2026-01-01 to", "1e400", "admin:", "null", "ё" * 300]
LEAKS = ("sqlalchemy", "psycopg", "sqlite3", "Traceback", "OperationalError", "DataError", "ProgrammingError",
         "StatementError")


def url_for(endpoint: str) -> str:
    from flask import url_for as flask_url_for

    return flask_url_for(endpoint)


def _model_views(app):
    admin = app.extensions["admin"][0]
    # Every list, also one kept out of the menu (the template list: the menu opens the matrix by event).
    return [v for v in admin._views if hasattr(v, "get_list")]


def _assert_clean(resp, what):
    assert resp.status_code in (200, 302, 400), f"{what}: {resp.status_code}"
    for leak in LEAKS:
        assert leak not in resp.text, f"{what}: {leak!r} in the response"
    assert not re.search(r"\bSELECT\b.*\bFROM\b|\bWHERE\b.*\bLIKE\b", resp.text), what


def test_every_list_filter_search_and_sort_survives_hostile_input(app):
    from urllib.parse import urlencode

    c = app.test_client()
    login(c)
    views = _model_views(app)
    assert len(views) >= 5
    tried = 0
    with app.test_request_context():
        for view in views:
            base = url_for(f"{view.endpoint}.index_view")
            seen: set[type] = set()
            for arg, (_, flt) in (view._filter_args or {}).items():
                # Every value on the first filter of each kind; the sharpest three on the others.
                values = HOSTILE_VALUES if type(flt) not in seen else HOSTILE_VALUES[2:3] + HOSTILE_VALUES[6:8]
                seen.add(type(flt))
                for value in values:
                    query = urlencode({f"flt0_{arg}": value})
                    _assert_clean(c.get(f"{base}?{query}"), f"{base}?flt0_{arg}={value[:20]!r}")
                    tried += 1
            if view.column_searchable_list:
                for value in HOSTILE_VALUES:
                    _assert_clean(c.get(f"{base}?{urlencode({'search': value})}"), f"{base} search {value[:20]!r}")
                    tried += 1
            for value in ["1", "99", "-1", "' OR 1=1 --", "a\x00"]:
                for desc in ("1", "' OR 1"):
                    _assert_clean(c.get(f"{base}?{urlencode({'sort': value, 'desc': desc})}"), f"{base} sort {value!r}")
                    tried += 1
            for extra in ({"page": "-1"}, {"page": "999999999999999999999"}, {"page_size": "1000000"},
                          {"page": "x"}, {"page_size": "' OR 1=1"}):
                _assert_clean(c.get(f"{base}?{urlencode(extra)}"), f"{base} {extra}")
    assert tried > 150


def test_a_hostile_filter_value_matches_nothing_instead_of_everything(app):
    from urllib.parse import urlencode

    c = app.test_client()
    login(c)
    for value in ("' OR 1=1 --", "%", "_"):
        page = c.get(f"/admin/notification/?{urlencode({'flt0_key_equals': value})}")
        assert page.status_code == 200 and "lesson:1" not in page.text.split("<tbody", 1)[-1]
    assert "lesson:1" in c.get("/admin/notification/?flt0_key_equals=lesson%3A1").text


def test_detail_pages_with_hostile_ids_do_not_fail(app):
    c = app.test_client()
    login(c)
    with app.test_request_context():
        for view in _model_views(app):
            if not view.can_view_details:
                continue
            base = url_for(f"{view.endpoint}.details_view")
            for value in ("' OR 1=1 --", "a\x00", "-1", "99999999999999999999999", "%", ""):
                _assert_clean(c.get(base, query_string={"id": value}), f"{base} id={value!r}")

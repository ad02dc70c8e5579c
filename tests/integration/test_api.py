"""The HTTP API (/api/v1) on PostgreSQL: keys, events with Idempotency-Key, clients, notifications."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from vestnik.cli import main
from vestnik.shared import api_keys, audit, client_sync
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.events import all_event_types
from vestnik.shared.models import (
    ApiKey,
    AuditLog,
    Base,
    Client,
    ClientGroup,
    DeliveryAttempt,
    Notification,
    OutboxEvent,
)
from vestnik.webapp import create_app
from vestnik.workers.notifications import add_pending

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def factory(pg_url):
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def make_app(factory, **settings):
    return create_app(Settings(secret_key="k" * 32, **settings), session_factory=factory, config={"TESTING": True})


@pytest.fixture
def app(factory):
    return make_app(factory)


def new_key(factory, name="crm") -> tuple[int, str]:
    with factory() as s:
        key, raw = api_keys.create(s, name, "test")
        s.commit()
        return key.id, raw


@pytest.fixture
def key(factory) -> tuple[int, str]:
    return new_key(factory)


def auth(raw: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}", **more}


def count(factory, model, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_the_document_is_openapi_3_1_and_covers_every_route_and_event_type(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()  # public: no key needed
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/events", "/clients/{client_id}", "/notifications"}
    mapping = doc["components"]["schemas"]["EventRequest"]["discriminator"]["mapping"]
    assert set(mapping) == {e.name for e in all_event_types()}
    lesson = doc["components"]["schemas"]["Event_lesson_cancelled"]
    data = doc["components"]["schemas"][lesson["properties"]["data"]["$ref"].rsplit("/", 1)[-1]]
    assert data["required"] == ["lesson_title", "starts_at"] and data["additionalProperties"] is False
    rules = {r.rule.removeprefix("/api/v1").replace("<path:client_id>", "{client_id}"): r.methods
             for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/") and "openapi" not in r.rule}
    for path, methods in rules.items():
        assert {m.lower() for m in methods} - {"head", "options"} <= set(doc["paths"][path]), path


def test_without_a_key_401_with_an_unknown_one_401_with_a_revoked_one_403(app, factory, key):
    c = app.test_client()
    body = {"event_type": "lesson_cancelled", "recipients": [1], "data": LESSON}
    resp = c.post("/api/v1/events", json=body)
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers and "API key" in resp.get_json()["error"]
    assert c.post("/api/v1/events", json=body, headers=auth("vk_not-a-key")).status_code == 401
    assert c.get("/api/v1/notifications", headers={"X-API-Key": key[1]}).status_code == 200
    with factory() as s:
        api_keys.revoke(s, key[0], "test")
        s.commit()
    resp = c.post("/api/v1/events", json=body, headers=auth(key[1]))
    assert resp.status_code == 403 and "revoked" in resp.get_json()["error"]
    assert count(factory, OutboxEvent) == 0


def test_requests_over_the_keys_rate_get_429_with_retry_after(factory, key):
    app = make_app(factory, api_rate_per_min=3)
    c = app.test_client()
    other = new_key(factory, "other")
    codes = [c.get("/api/v1/notifications", headers=auth(key[1])).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = c.get("/api/v1/notifications", headers=auth(key[1]))
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
    assert c.get("/api/v1/notifications", headers=auth(other[1])).status_code == 200  # per key


def test_the_keys_rate_is_shared_by_every_web_process_through_redis(factory, key, redis_url, redis_client):
    first, second = (make_app(factory, api_rate_per_min=3, redis_url=redis_url).test_client() for _ in range(2))
    codes = [c.get("/api/v1/notifications", headers=auth(key[1])).status_code
             for c in (first, second, first, second)]
    assert codes == [200, 200, 200, 429]
    down = make_app(factory, redis_url="redis://127.0.0.1:1/0").test_client()  # nothing listens there
    resp = down.get("/api/v1/notifications", headers=auth(key[1]))
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"


def test_an_event_is_accepted_attributed_and_audited(app, factory, key):
    resp = app.test_client().post("/api/v1/events", headers=auth(key[1]), json={
        "event_type": "lesson_cancelled", "recipients": [17, "crm-42"], "data": LESSON, "key": "lesson:9"})
    assert resp.status_code == 202
    event_id = resp.get_json()["id"]
    with factory() as s:
        event = s.get(OutboxEvent, event_id)
        assert (event.recipients, event.key, event.initiator) == ([17, "crm-42"], "lesson:9", f"api_key:{key[0]}")
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "event.emit")).one()
        assert (audit.actor, audit.object_id) == (f"api_key:{key[0]}", str(event_id))
        assert s.get(ApiKey, key[0]).last_used_at is not None


def test_a_bad_event_gets_422_with_one_entry_per_bad_field_and_nothing_is_written(app, factory, key):
    c = app.test_client()
    resp = c.post("/api/v1/events", headers=auth(key[1]), json={
        "event_type": "lesson_cancelled", "recipients": "1,2", "data": {"lesson_title": "", "room": 3},
        "send_at": "2026-11-25T16:00:00", "priority": "high"})
    assert resp.status_code == 422
    fields = {p["field"]: p["message"] for p in resp.get_json()["problems"]}
    assert set(fields) == {"priority", "data.lesson_title", "data.starts_at", "data.room", "recipients", "send_at"}
    assert fields["data.starts_at"] == "required"
    resp = c.post("/api/v1/events", headers=auth(key[1]), json={"event_type": "lesson_canceled", "data": {}})
    assert resp.status_code == 422 and "did you mean 'lesson_cancelled'" in resp.get_json()["problems"][0]["message"]
    assert c.post("/api/v1/events", headers=auth(key[1]), data="{not json",
                  content_type="application/json").status_code == 400
    assert c.post("/api/v1/events", headers=auth(key[1]), data="x=1").status_code == 415
    big = {"event_type": "job_finished", "recipients": [1], "data": {"job_title": "x", "stats": {"a": "x" * 600_000}}}
    assert c.post("/api/v1/events", headers=auth(key[1]), json=big).status_code == 413
    assert c.post("/api/v1/events", headers=auth(key[1]), json=[1]).status_code == 422
    assert count(factory, OutboxEvent) == 0


def test_a_retry_with_the_same_idempotency_key_returns_the_first_event_and_creates_nothing(app, factory, key):
    c = app.test_client()
    body = {"event_type": "lesson_cancelled", "recipients": [1], "data": LESSON}
    first = c.post("/api/v1/events", headers=auth(key[1], **{"Idempotency-Key": "req-1"}), json=body)
    again = c.post("/api/v1/events", headers=auth(key[1], **{"Idempotency-Key": "req-1"}), json=body)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    changed = c.post("/api/v1/events", headers=auth(key[1], **{"Idempotency-Key": "req-1"}),
                     json={**body, "recipients": [2]})
    assert changed.status_code == 409
    other = new_key(factory, "other CRM")  # a key's Idempotency-Keys are its own
    assert c.post("/api/v1/events", headers=auth(other[1], **{"Idempotency-Key": "req-1"}),
                  json=body).get_json()["id"] != first.get_json()["id"]
    bad = c.post("/api/v1/events", headers=auth(key[1], **{"Idempotency-Key": "x" * 151}), json=body)
    assert bad.status_code == 422 and bad.get_json()["problems"][0]["field"] == "Idempotency-Key"
    assert count(factory, OutboxEvent) == 2
    assert count(factory, AuditLog, AuditLog.action == "event.emit") == 2


def test_put_creates_then_merges_and_never_resets_what_the_client_chose(app, factory, key):
    c = app.test_client()
    resp = c.put("/api/v1/clients/42", headers=auth(key[1]),
                 json={"name": "Анна", "email": "anna@example.com", "groups": ["Робототехника"]})
    assert resp.status_code == 201
    assert resp.get_json()["allow_marketing"] is False and resp.get_json()["groups"] == ["Робототехника"]
    with factory() as s:  # the client consents to marketing and switches email off in the profile
        anna = s.get(Client, 42)
        anna.allow_marketing_notifications, anna.notifications_email_enabled = True, False
        s.commit()
    resp = c.put("/api/v1/clients/42", headers=auth(key[1]), json={"name": "Анна Смирнова"})
    assert resp.status_code == 200
    view = c.get("/api/v1/clients/42", headers=auth(key[1])).get_json()
    assert (view["name"], view["allow_marketing"], view["email_enabled"]) == ("Анна Смирнова", True, False)
    assert view["groups"] == ["Робототехника"] and view["id"] == "42"
    bad = c.put("/api/v1/clients/42", headers=auth(key[1]), json={"emial": "x", "timezone": "Mars/Base",
                                                                   "allow_marketing": "yes"})
    assert bad.status_code == 422
    assert {p["field"] for p in bad.get_json()["problems"]} == {"emial", "timezone", "allow_marketing"}
    assert c.get("/api/v1/clients/43", headers=auth(key[1])).status_code == 404
    assert c.put("/api/v1/clients/a%20b", headers=auth(key[1]), json={}).status_code == 422
    with factory() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.actor == f"api_key:{key[0]}")
                            .order_by(AuditLog.id)).all()
    assert actions == ["client.create", "client.update"]


def test_delete_forgets_the_person_and_keeps_the_history_without_personal_data(app, factory, key):
    c = app.test_client()
    c.put("/api/v1/clients/7", headers=auth(key[1]), json={"name": "Вера", "email": "vera@example.com",
                                                           "telegram_chat_id": 7007, "tags": ["VIP"]})
    with factory() as s:
        sent, pending = add_pending(s, [
            {"recipient_id": 7, "channel": "email", "recipient_address": "vera@example.com", "event_type": "x",
             "template_code": "X", "payload_json": {"name": "Вера"}, "step": "a", "send_at": None},
            {"recipient_id": 7, "channel": "telegram", "recipient_address": "7007", "event_type": "x",
             "template_code": "X", "payload_json": {}, "step": "b", "send_at": None}])
        row = s.get(Notification, sent.id)
        row.subject, row.body = "Вера, привет", "<p>Вера</p>"
        s.add(DeliveryAttempt(notification_id=sent.id, attempt_no=1, outcome="permanent",
                              error="550 vera@example.com: no such mailbox"))
        s.commit()
    resp = c.delete("/api/v1/clients/7", headers=auth(key[1]))
    assert resp.status_code == 200 and resp.get_json() == {"id": "7", "status": "forgotten", "notifications": 2,
                                                           "canceled": 2}
    with factory() as s:
        vera = s.get(Client, 7)
        assert (vera.name, vera.email, vera.telegram_chat_id) == ("", None, None) and vera.forgotten_at
        assert not (vera.notifications_email_enabled or vera.allow_service_notifications)
        assert s.scalar(select(func.count()).select_from(ClientGroup)) == 0
        rows = s.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(r.status, r.recipient_address, r.body, r.payload_json) for r in rows] == [
            ("canceled", "[erased]", None, {}), ("canceled", "[erased]", None, {})]
        assert s.scalars(select(DeliveryAttempt.error)).one() == "[erased]"
        dump = json.dumps([str(v) for r in rows for v in r.__dict__.values()], ensure_ascii=False)
        assert "vera" not in dump.lower() and "Вера" not in dump
    assert c.get("/api/v1/clients/7", headers=auth(key[1])).get_json()["forgotten_at"] is not None
    assert c.delete("/api/v1/clients/8", headers=auth(key[1])).status_code == 404


@pytest.mark.parametrize("client_id", ["9", "7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11"])
def test_no_table_names_a_forgotten_client(app, factory, key, client_id):
    """The class of the test above: after DELETE no table (history, attempts, audit, ...) holds the
    person's name, phone or addresses, wherever the data had gone; the audit keeps what changed.  The CRM's
    id (an integer or a UUID) stays: it names the client to the CRM and is not personal data."""
    c = app.test_client()
    person = {"name": "Зинаида Пермякова", "email": "zinaida.permyakova@example.com",
              "telegram_chat_id": 918273645, "phone": "+998901234567"}
    assert c.put(f"/api/v1/clients/{client_id}", headers=auth(key[1]), json=person).status_code in (200, 201)
    with factory() as s:  # what an admin's edit of the client and the client's own change leave in the audit
        audit.record(s, "admin:1", "client.preferences", "client", client_id, {"changes": {
            "name": ["", person["name"]], "address_email": [None, person["email"]],
            "address_telegram": [None, str(person["telegram_chat_id"])], "phone": [None, person["phone"]]}})
        audit.client_action(s, client_sync.find(s, client_id).id, "client.address", {"email": person["email"]})
        s.commit()
    assert c.delete(f"/api/v1/clients/{client_id}", headers=auth(key[1])).status_code == 200
    with factory() as s:
        dump = json.dumps([[str(v) for v in row] for table in Base.metadata.sorted_tables
                           for row in s.execute(select(table)).all()], ensure_ascii=False).lower()
        changes = s.scalars(select(AuditLog.details).where(AuditLog.action == "client.preferences")).one()
    for value in person.values():
        assert str(value).lower() not in dump, value
    assert sorted(changes["changes"]) == ["address_email", "address_telegram", "name", "phone"]


def test_notifications_are_found_by_client_event_and_status_page_by_page(app, factory, key):
    c = app.test_client()
    c.put("/api/v1/clients/5", headers=auth(key[1]), json={"name": "Ян", "email": "jan@example.com"})
    with factory() as s:
        add_pending(s, [{"recipient_id": 5, "channel": "email", "recipient_address": "jan@example.com",
                         "event_type": "lesson_cancelled", "template_code": "X", "payload_json": {},
                         "step": f"s{i}", "send_at": None, "event_id": 100 + i % 2} for i in range(5)])
        s.commit()
    page = c.get("/api/v1/notifications?client=5&limit=2", headers=auth(key[1])).get_json()
    assert len(page["notifications"]) == 2 and page["next"] is not None
    rest = c.get(f"/api/v1/notifications?client=5&before={page['next']}", headers=auth(key[1])).get_json()
    assert len(rest["notifications"]) == 3 and rest["next"] is None
    by_event = c.get("/api/v1/notifications?event=101&status=pending", headers=auth(key[1])).get_json()
    assert {n["event_id"] for n in by_event["notifications"]} == {101} and len(by_event["notifications"]) == 2
    assert c.get("/api/v1/notifications?client=6", headers=auth(key[1])).get_json()["notifications"] == []
    bad = c.get("/api/v1/notifications?status=lost&event=x&sort=id", headers=auth(key[1]))
    assert bad.status_code == 422 and {p["field"] for p in bad.get_json()["problems"]} == {"status", "event", "sort"}


def test_unknown_routes_and_methods_answer_json(app, key):
    c = app.test_client()
    resp = c.get("/api/v1/nothing", headers=auth(key[1]))
    assert resp.status_code == 404 and resp.is_json
    resp = c.patch("/api/v1/events", headers=auth(key[1]))
    assert resp.status_code == 405 and resp.is_json


def test_the_cli_creates_prints_once_lists_and_revokes_keys(pg_url, factory, capsys, monkeypatch):
    monkeypatch.setenv("VESTNIK_DATABASE_URL", pg_url)
    assert main(["api-keys", "create", "--name", "crm-production"]) == 0
    out = capsys.readouterr()
    raw = out.out.strip()
    assert raw.startswith("vk_") and "only this once" in out.err
    with factory() as s:
        key = s.scalars(select(ApiKey)).one()
        assert key.key_hash == api_keys.digest(raw) and raw not in (key.prefix, key.key_hash)
    assert main(["api-keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert "crm-production" in listed and "active" in listed and raw not in listed
    assert main(["api-keys", "revoke", str(key.id)]) == 0
    assert main(["api-keys", "list"]) == 0 and "revoked" in capsys.readouterr().out
    assert main(["api-keys", "create", "--name", ""]) == 2


def _admin_client(factory, role: str):
    import re

    from werkzeug.security import generate_password_hash

    from vestnik.shared.models import AdminUser

    app = make_app(factory)
    with factory() as s:
        s.add(AdminUser(email=f"{role}@school.test", password_hash=generate_password_hash("correct horse battery"),
                        role=role))
        s.commit()
    c = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', c.get("/admin/login").text).group(1)
    c.post("/admin/login", data={"email": f"{role}@school.test", "password": "correct horse battery",
                                 "csrf_token": token})
    return c, lambda html: re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def test_the_admin_creates_a_key_shown_once_and_revokes_it_support_only_looks(factory):
    c, token = _admin_client(factory, "admin")
    page = c.get("/admin/api-keys/")
    assert page.status_code == 200 and "No keys yet" in page.text
    created = c.post("/admin/api-keys/", data={"name": "crm-production", "csrf_token": token(page.text)})
    raw = re.search(r'data-testid="new-api-key">(vk_[^<]+)<', created.text).group(1)
    again = c.get("/admin/api-keys/")
    assert raw not in again.text and "crm-production" in again.text and raw[:8] in again.text
    api = make_app(factory).test_client()
    assert api.get("/api/v1/notifications", headers=auth(raw)).status_code == 200
    with factory() as s:
        key_id = s.scalars(select(ApiKey.id)).one()
        assert s.scalars(select(AuditLog.action).where(AuditLog.object_type == "api_key")).all() == ["api_key.create"]
    c.post("/admin/api-keys/revoke", data={"key_id": str(key_id), "csrf_token": token(again.text)})
    assert api.get("/api/v1/notifications", headers=auth(raw)).status_code == 403
    support, token2 = _admin_client(factory, "support")
    page = support.get("/admin/api-keys/")
    assert page.status_code == 200 and "Create key" not in page.text
    assert support.post("/admin/api-keys/", data={"name": "x", "csrf_token": token2(page.text)}).status_code == 403

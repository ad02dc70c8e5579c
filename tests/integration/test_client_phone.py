"""A client's phone (E.164) through every way a client is written or read, on PostgreSQL: the CSV import,
the HTTP API (and its OpenAPI document), the SQL function from psql, vestnik_client, the admin, the profile,
forgetting; and a booking or payment webhook that names its client by phone (found, unknown, shared)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from tests.integration.test_admin import login, make_admin_app, token
from tests.integration.test_api import auth, make_app, new_key
from tests.integration.test_profile import make_settings, sign_in
from tests.integration.test_webhooks import SECRET, post
from vestnik.shared.clients_import import import_clients
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AuditLog, Client, OutboxEvent
from vestnik.webapp import create_app
from vestnik_client import InvalidClient, upsert_clients


@pytest.fixture
def factory(pg_url):
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def phones(factory) -> dict[int, str | None]:
    with factory() as s:
        return dict(s.execute(select(Client.id, Client.phone).order_by(Client.id)).all())


def test_the_csv_import_normalises_reports_bad_numbers_by_line_and_never_clears_a_phone(factory):
    csv = ("id,name,phone\n"
           "1,Анна,+7 (916) 123-45-67\n"
           "2,Борис,8 916 123 45 67\n"
           "3,Вера,+7916\n"
           "4,Дина,\u00a0+998\u00a090\u00a0123-45-67\n")
    with factory() as s:
        report = import_clients(s, io.StringIO(csv))
        s.commit()
    assert phones(factory) == {1: "+79161234567", 4: "+998901234567"}
    assert [(line, problem.split(":")[0]) for line, problem in report.errors] == [(3, "phone"), (4, "phone")]
    assert "must start with + and the country code" in report.errors[0][1] and "8 916" in report.errors[0][1]
    # A later export without the column, or with an empty cell, leaves the stored phone alone.
    for later in ("id,name\n1,Анна Смирнова\n", "id,name,phone\n1,Анна С.,\n"):
        with factory() as s:
            assert not import_clients(s, io.StringIO(later)).errors
            s.commit()
        assert phones(factory)[1] == "+79161234567"
    with factory() as s:
        import_clients(s, io.StringIO("id,phone\n1,+44 20 7946 0958\n"))
        s.commit()
    assert phones(factory)[1] == "+442079460958"


def test_the_api_sets_reads_clears_and_forgets_a_phone_and_documents_it(factory):
    app = make_app(factory)
    _, raw = new_key(factory)
    c = app.test_client()
    bad = c.put("/api/v1/clients/5", headers=auth(raw), json={"name": "Вера", "phone": "+7 916 123-45-67"})
    assert bad.status_code == 422
    [problem] = bad.get_json()["problems"]
    assert problem["field"] == "phone" and "E.164" in problem["message"]
    for wrong in (79161234567, "+0123456789", "+7916123456789012"):
        assert c.put("/api/v1/clients/5", headers=auth(raw), json={"phone": wrong}).status_code == 422, wrong
    assert phones(factory) == {}
    made = c.put("/api/v1/clients/5", headers=auth(raw), json={"name": "Вера", "phone": "+79161234567"})
    assert made.status_code == 201 and made.get_json()["phone"] == "+79161234567"
    assert c.put("/api/v1/clients/5", headers=auth(raw), json={"name": "Вера С."}).get_json()["phone"] == "+79161234567"
    assert c.get("/api/v1/clients/5", headers=auth(raw)).get_json()["phone"] == "+79161234567"
    assert c.put("/api/v1/clients/5", headers=auth(raw), json={"phone": None}).get_json()["phone"] is None
    c.put("/api/v1/clients/5", headers=auth(raw), json={"phone": "+79161234567"})
    assert c.delete("/api/v1/clients/5", headers=auth(raw)).status_code == 200
    assert c.get("/api/v1/clients/5", headers=auth(raw)).get_json()["phone"] is None
    with factory() as s:
        details = s.scalars(select(AuditLog.details).where(AuditLog.object_type == "client")).all()
    assert "+79161234567" not in json.dumps(details)  # the audit names fields, not values
    doc = c.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    phone = doc["ClientFields"]["properties"]["phone"]
    assert [branch.get("pattern") for branch in phone["anyOf"]] == [r"^[+][1-9][0-9]{6,14}$", None]
    assert "phone" in doc["Client"]["required"]


def test_the_sql_function_sets_keeps_and_clears_a_phone_and_names_a_bad_one(psql, factory):
    code, out, err = psql("""
SELECT vestnik_upsert_client('42', '{"name": "Анна", "phone": "+79161234567"}');
SELECT vestnik_upsert_client('42', '{"name": "Анна Смирнова"}');
SELECT phone FROM clients WHERE id = 42;
SELECT vestnik_upsert_client('42', '{"phone": null}');
SELECT coalesce(phone, 'none') FROM clients WHERE id = 42;
""")
    assert code == 0, err
    assert out.split() == ["created", "updated", "+79161234567", "updated", "none"]
    code, _out, err = psql("""SELECT vestnik_upsert_client('43', '{"phone": "8 916 123-45-67"}');""")
    assert code != 0 and "phone: must be a phone number in E.164 form" in err
    assert list(phones(factory)) == [42]


def test_vestnik_client_upserts_a_phone_in_the_callers_transaction(pg_url, factory):
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        assert upsert_clients(conn, [{"id": 17, "name": "Анна", "phone": "+998901234567"}]) == {"created": 1,
                                                                                                "updated": 0}
        with pytest.raises(InvalidClient) as err:
            upsert_clients(conn, [{"id": 18, "phone": "+7 916 123-45-67"}])
        assert [p.split(":")[0] for p in err.value.problems] == ["clients[0].phone"]
    assert phones(factory) == {17: "+998901234567"}


def test_the_admin_normalises_a_typed_phone_refuses_a_national_one_and_shows_it(pg_url):
    factory = make_session_factory(make_engine(pg_url))
    app = make_admin_app(factory)
    c = app.test_client()
    login(c)
    page = c.get("/admin/client/edit/?id=1")
    assert page.status_code == 200 and "Phone (E.164)" in page.text
    form = {"csrf_token": token(page.text), "locale": "ru", "timezone": "Europe/Moscow",
            "allow_service_notifications": "y", "set_address_email": "anna@example.com",
            "set_address_telegram": "1001", "enabled_email": "y", "enabled_telegram": "y", "enabled_webhook": "y"}
    refused = c.post("/admin/client/edit/?id=1", data={**form, "phone": "8 (916) 123-45-67"})
    assert refused.status_code == 200 and "must start with + and the country code" in refused.text
    assert phones(factory) == {1: None}
    saved = c.post("/admin/client/edit/?id=1", data={**form, "phone": "+7 (916) 123-45-67"})
    assert saved.status_code == 302
    assert phones(factory) == {1: "+79161234567"}
    assert "+79161234567" in c.get("/admin/client/details/?id=1").text
    assert "+79161234567" in c.get("/admin/client/?search=%2B7916").text
    cleared = c.post("/admin/client/edit/?id=1", data={**form, "phone": ""})
    assert cleared.status_code == 302 and phones(factory) == {1: None}


def test_the_profile_shows_the_phone_on_record(bot_api, smtp_server, pg_url):
    factory = make_session_factory(make_engine(pg_url))
    app = create_app(make_settings(bot_api, smtp_server), session_factory=factory, config={"TESTING": True})
    with factory() as s:
        s.add(Client(id=1, name="Анна", email="anna@example.com", locale="en", phone="+79161234567"))
        s.commit()
    c = app.test_client()
    sign_in(c, smtp_server)
    assert "Phone on record: +79161234567" in c.get("/me/").text


@pytest.fixture
def hooks(factory):
    app = create_app(Settings(secret_key="k" * 32, webhook_secrets=SECRET), session_factory=factory,
                     config={"TESTING": True})
    if "webhooks" not in app.blueprints:
        from vestnik.webapp import webhooks

        app.register_blueprint(webhooks.bp)
    with factory() as s:
        s.add_all([Client(id=7, name="Анна", phone="+79161234567"),
                   Client(id=8, name="Борис", phone="+79990000001"), Client(id=9, name="Вера", phone="+79990000001"),
                   Client(id=10, name="Забытый", phone=None)])
        s.commit()
    return app.test_client()


BOOKING = {"id": "B-77", "service": "Пробное занятие", "starts_at": "2026-12-01T16:00:00+03:00",
           "ends_at": "2026-12-01T17:00:00+03:00"}


def test_a_booking_names_its_client_by_phone_and_an_unknown_or_shared_phone_is_refused_by_name(hooks, factory):
    def book(n: int, **who):
        return post(hooks, "/webhooks/bookings", {"event_id": f"bk-{n}", "type": "created",
                                                  "booking": {**BOOKING, **who}})

    found = book(1, phone="+7 916 123-45-67")
    assert found.status_code == 200 and found.json["status"] == "accepted", found.json
    unknown = book(2, phone="+79160000000")
    assert unknown.status_code == 422
    assert unknown.json["error"].startswith("booking.phone: no client has the phone +79160000000")
    shared = book(3, phone="+79990000001")
    assert shared.status_code == 409
    assert shared.json["error"] == ("booking.phone: +79990000001 is the phone of 2 clients (ids 8, 9); "
                                    "send client_id to say which one")
    national = book(4, phone="8 916 123 45 67")
    assert national.status_code == 422 and national.json["error"].startswith("booking.phone: must start with +")
    assert book(5, phone=79161234567).status_code == 422
    assert book(6).json["error"] == "missing field(s): booking.client_id or booking.phone"
    both = book(7, client_id=9, phone="+79161234567")  # the CRM's id wins; the phone is not looked up
    assert both.status_code == 200
    with factory() as s:
        assert [e.recipients for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))] == [[7], [9]]


def test_the_documented_booking_by_phone_is_accepted(hooks, factory):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"### Naming a client by phone.*?```json\n(.*?)```", doc, re.S).group(1))
    assert post(hooks, "/webhooks/bookings", example).status_code == 200
    with factory() as s:
        assert s.scalars(select(OutboxEvent.recipients)).all() == [[7]]


def test_a_payment_names_its_client_by_phone(hooks, factory):
    payment = {"event_id": "bank-1", "payment_id": "p-1", "invoice_id": "17", "amount": "4500.00",
               "currency": "RUB", "status": "succeeded"}
    assert post(hooks, "/webhooks/payments", {**payment, "phone": "+7 916 1234567"}).status_code == 200
    shared = post(hooks, "/webhooks/payments", {**payment, "event_id": "bank-2", "payment_id": "p-2",
                                                "phone": "+79990000001"})
    assert shared.status_code == 409
    with factory() as s:
        assert [e.recipients for e in s.scalars(select(OutboxEvent))] == [[7]]

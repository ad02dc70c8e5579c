"""CRM client ids that are strings (a UUID), through every entry point, on PostgreSQL.

The class test (:func:`test_a_uuid_client_is_one_client_through_every_entry_point`) sends the same UUID
client in through each way a CRM has (Python in the CRM's transaction, the light client, the SQL
functions from psql, the HTTP API, the CSV import, a webhook), and checks that it ends as one
``clients`` row that gets the notification, and that every place that shows a client's id shows the
UUID, never the row key the id got (``shared/client_ids.py``).
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import uuid
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from werkzeug.security import generate_password_hash

import vestnik_client
from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared import api_keys, client_ids, client_sync, client_view
from vestnik.shared.clients_import import import_clients
from vestnik.shared.composer import client_variables
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AdminUser, AuditLog, Client, Notification, OutboxEvent
from vestnik.webapp import create_app
from vestnik.webapp.signatures import sign
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event

UUID = "7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11"
LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
PASSWORD = "correct horse battery"
SECRET = "whsec-current-0123456789"


@pytest.fixture
def factory(pg_url):
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def app(factory):
    app = create_app(Settings(secret_key="k" * 32, webhook_secrets=SECRET), session_factory=factory,
                     config={"TESTING": True})
    if "webhooks" not in app.blueprints:
        from vestnik.webapp import webhooks

        app.register_blueprint(webhooks.bp)
    return app


@pytest.fixture
def raw_key(factory) -> str:
    with factory() as s:
        _key, raw = api_keys.create(s, "crm", "test")
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD)))
        s.commit()
    return raw


@pytest.fixture
def crm_conn(pg_url):
    """A psycopg 3 connection as a CRM holds one (not autocommit)."""
    url = make_url(pg_url)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as conn:
        yield conn


def _api(app, raw_key):
    c = app.test_client()
    headers = {"Authorization": f"Bearer {raw_key}"}
    return c, headers


# ------------------------------------------------------------------ the ways in: upsert, then emit


def upsert_python(ctx, client_id, fields):
    vestnik_client.upsert_clients(ctx["crm_conn"], [{"id": uuid.UUID(client_id) if _is_uuid(client_id)
                                                     else client_id, **fields}])
    ctx["crm_conn"].commit()


def upsert_sql(ctx, client_id, fields):
    code, out, err = ctx["psql"](f"SELECT vestnik_upsert_client('{client_id}', '{json.dumps(fields)}');")
    assert code == 0, err


def upsert_http(ctx, client_id, fields):
    c, headers = _api(ctx["app"], ctx["raw_key"])
    resp = c.put(f"/api/v1/clients/{client_id}", headers=headers, json=fields)
    assert resp.status_code in (200, 201), resp.get_json()
    assert resp.get_json()["id"] == client_id


def upsert_csv(ctx, client_id, fields):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", *fields])
    writer.writerow([client_id, *fields.values()])
    writer.writerow(["1001", *fields.values()])  # an integer id in the same file
    with ctx["factory"]() as s:
        report = import_clients(s, io.StringIO(out.getvalue()))
        assert report.errors == []
        s.commit()


def emit_python(ctx, client_id):
    with ctx["factory"]() as s:
        event_id = emit(s, "lesson_cancelled", recipients=[client_id], data=LESSON)
        s.commit()
    return event_id


def emit_light(ctx, client_id):
    event_id = vestnik_client.emit(ctx["crm_conn"], "lesson_cancelled", recipients=[uuid.UUID(client_id)],
                                   data=LESSON)
    ctx["crm_conn"].commit()
    return event_id


def emit_sql(ctx, client_id):
    code, out, err = ctx["psql"](
        f"SELECT vestnik_emit('lesson_cancelled', '[\"{client_id}\"]', '{json.dumps(LESSON, ensure_ascii=False)}');")
    assert code == 0, err
    return int(out)


def emit_http(ctx, client_id):
    c, headers = _api(ctx["app"], ctx["raw_key"])
    resp = c.post("/api/v1/events", headers=headers,
                  json={"event_type": "lesson_cancelled", "recipients": [client_id], "data": LESSON})
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


def emit_webhook(ctx, client_id):
    booking = {"id": "B-1", "client_id": client_id, "service": "Пробное занятие",
               "starts_at": "2026-11-25T16:00:00+03:00", "ends_at": "2026-11-25T17:00:00+03:00"}
    body = json.dumps({"event_id": "b1", "type": "created", "booking": booking}).encode()
    resp = ctx["app"].test_client().post("/webhooks/bookings", data=body, headers={
        "Content-Type": "application/json", **sign(SECRET, body)})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["event_id"]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


UPSERTS: dict[str, Callable] = {"python": upsert_python, "sql": upsert_sql, "http": upsert_http, "csv": upsert_csv}
WAYS = {  # entry point -> (how the client is synced, how the event is emitted)
    "outbox.emit": (upsert_python, emit_python),
    "vestnik_client": (upsert_python, emit_light),
    "sql": (upsert_sql, emit_sql),
    "http": (upsert_http, emit_http),
    "csv": (upsert_csv, emit_python),
    "webhook": (upsert_http, emit_webhook),
}


def _admin(app):
    c = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', c.get("/admin/login").text).group(1)
    c.post("/admin/login", data={"email": "admin@school.test", "password": PASSWORD, "csrf_token": token})
    return c


@pytest.mark.parametrize("way", list(WAYS))
def test_a_uuid_client_is_one_client_through_every_entry_point(way, app, factory, raw_key, crm_conn, psql):
    ctx = {"app": app, "factory": factory, "raw_key": raw_key, "crm_conn": crm_conn, "psql": psql}
    sync, send = WAYS[way]
    sync(ctx, UUID, {"name": "Вера", "email": "vera@example.com"})
    for other in UPSERTS.values():  # every other way names the same client: merged, never a second row
        other(ctx, UUID, {"locale": "ru"})
    event_id = send(ctx, UUID)
    assert handle_event(factory, build_channels(Settings()), event_id).status == "processed"

    with factory() as s:
        (client,) = s.scalars(select(Client).where(Client.id < 0)).all()
        assert client.crm_id == UUID and client.name == "Вера" and client.address("email") == "vera@example.com"
        key = client.id
        event = s.get(OutboxEvent, event_id)
        assert event.unknown_clients is None and event.recipients == [UUID]
        got = s.scalars(select(Notification).where(Notification.event_id == event_id)).all()
        assert got and {n.recipient_id for n in got} == {key}
        audited = s.scalars(select(AuditLog.object_id).where(AuditLog.object_type == "client")).all()
        assert str(key) not in audited
        # a template's {{ client_id }} is the CRM's id, whichever way delivery reads the client
        assert client_variables(client)["client_id"] == UUID
        assert client_variables(client_view.load(s, [key])[key])["client_id"] == UUID
        assert str(client) == f"Вера (#{UUID})"

    # Every place that shows the client's id shows the UUID, never the row key.
    api, headers = _api(app, raw_key)
    assert api.get(f"/api/v1/clients/{UUID}", headers=headers).get_json()["id"] == UUID
    found = api.get(f"/api/v1/notifications?client={UUID}", headers=headers).get_json()["notifications"]
    assert found and {n["client"] for n in found} == {UUID}
    admin = _admin(app)
    pages = {
        "client list": admin.get("/admin/client/").text,
        "client search": admin.get(f"/admin/client/?search={UUID}").text,
        "client details": admin.get(f"/admin/client/details/?id={key}").text,
        "history": admin.get("/admin/notification/").text,
        "history of the client": admin.get(f"/admin/notification/?flt0_client_id_equals={UUID}").text,
        "notification": admin.get(f"/admin/notification/details/?id={got[0].id}").text,
        "history export": admin.get(f"/admin/notification/export/csv/?flt0_client_id_equals={UUID}").text,
        "event": admin.get(f"/admin/outboxevent/details/?id={event_id}").text,
        "audit": admin.get("/admin/audit/").text,  # the API's upsert of the client
    }
    editor = admin.get("/admin/template/new/").text
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', editor).group(1)
    preview = admin.post("/admin/template/preview/", headers={"X-CSRFToken": csrf}, data={
        "code": "LESSON_CANCELLED", "channel": "email", "locale": "ru", "subject": "Для {{ client_id }}",
        "body": "<p>{{ name }}, ваш id {{ client_id }}</p>", "client_id": UUID}).get_json()
    assert preview["problems"] == {} and preview["client"] == f"Вера (#{UUID})"
    assert preview["subject"] == f"Для {UUID}" and UUID in preview["text"]
    assert admin.get(f"/admin/client/edit/?id={key}").status_code == 200
    for name, page in pages.items():
        assert UUID in page, name
        assert f"#{key}" not in page and f">{key}<" not in page and f",{key}," not in page, name
    rows = list(csv.DictReader(io.StringIO(pages["history export"])))
    assert rows and {r["client_id"] for r in rows} == {UUID}


def test_an_integer_and_its_decimal_text_are_one_client_and_other_strings_are_others(factory):
    with factory() as s:
        a, created = client_sync.upsert(s, 42, {"name": "Анна"})
        b, again = client_sync.upsert(s, "42", {"name": "Анна Смирнова"})
        c, other = client_sync.upsert(s, "042", {"name": "Другая"})
        d, negative = client_sync.upsert(s, "-5", {"name": "Ещё одна"})
        s.commit()
        assert (created, again, other, negative) == (True, False, True, True)
        assert a is b and a.id == 42 and a.crm_id == "42" and a.name == "Анна Смирнова"
        assert c.id < 0 and c.crm_id == "042" and d.id < 0 and d.crm_id == "-5" and c.id != d.id
        assert client_ids.client_keys([42, "42", "042", "-5", "nobody"], s) == ([42, c.id, d.id], ["nobody"])


def test_one_query_resolves_a_batch_and_integer_ids_need_none(factory):
    with factory() as s:
        client_sync.upsert(s, UUID, {})
        s.commit()
        statements: list[str] = []
        from sqlalchemy import event

        bind = s.get_bind()
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(bind, "before_cursor_execute", listener)
        try:
            assert client_ids.client_keys([1, "2", 3], s) == ([1, 2, 3], [])
            assert statements == []
            keys, unknown = client_ids.client_keys([1, UUID, "crm-x", "crm-y"], s)
            assert len(statements) == 1 and len(keys) == 2 and unknown == ["crm-x", "crm-y"]
        finally:
            event.remove(bind, "before_cursor_execute", listener)


def test_an_event_naming_an_unknown_string_id_lists_it_as_given(app, factory, raw_key):
    api, headers = _api(app, raw_key)
    resp = api.post("/api/v1/events", headers=headers, json={"event_type": "lesson_cancelled",
                                                             "recipients": ["crm-unknown-1", UUID], "data": LESSON})
    event_id = resp.get_json()["id"]
    assert handle_event(factory, build_channels(Settings()), event_id).status == "processed"
    with factory() as s:
        assert s.get(OutboxEvent, event_id).unknown_clients == [UUID, "crm-unknown-1"]
    page = _admin(app).get(f"/admin/outboxevent/details/?id={event_id}").text
    assert f"{UUID}, crm-unknown-1" in page


def test_forgetting_a_uuid_client_erases_contact_data_and_keeps_the_crm_id(app, factory, raw_key):
    api, headers = _api(app, raw_key)
    person = {"name": "Зинаида Пермякова", "email": "zinaida@example.com", "phone": "+998901234567"}
    assert api.put(f"/api/v1/clients/{UUID}", headers=headers, json=person).status_code == 201
    event_id = emit_http({"app": app, "raw_key": raw_key}, UUID)
    handle_event(factory, build_channels(Settings()), event_id)
    gone = api.delete(f"/api/v1/clients/{UUID}", headers=headers)
    assert gone.status_code == 200 and gone.get_json()["id"] == UUID
    with factory() as s:
        (client,) = s.scalars(select(Client).where(Client.crm_id == UUID)).all()
        assert client.forgotten_at is not None and client.name == "" and client.address("email") is None
        dump = json.dumps([list(map(str, r)) for r in s.execute(text(
            "SELECT n.recipient_address, n.body FROM notifications n")).all()], ensure_ascii=False)
    for value in person.values():
        assert value not in dump
    # The CRM's id is its identifier, not personal data: the client can be synced back under it.
    assert api.get(f"/api/v1/clients/{UUID}", headers=headers).get_json()["forgotten_at"] is not None


BAD_IDS = {"65 characters": "x" * 65, "empty": "", "a control character": "crm\x07id", "a space": "crm id"}


@pytest.mark.parametrize("bad", list(BAD_IDS))
def test_a_bad_string_id_is_refused_by_name_at_every_entry_point(bad, app, factory, raw_key, crm_conn, psql):
    value = BAD_IDS[bad]
    with pytest.raises(vestnik_client.InvalidEvent, match=r"recipients\[1\]"):
        vestnik_client.emit(crm_conn, "lesson_cancelled", recipients=[1, value], data=LESSON)
    with pytest.raises(vestnik_client.InvalidClient, match=r"clients\[1\]\.id"):
        vestnik_client.upsert_clients(crm_conn, [{"id": 1}, {"id": value}])
    crm_conn.rollback()
    from vestnik.shared.errors import EventValidationError

    with factory() as s, pytest.raises(EventValidationError, match="recipients"):
        emit(s, "lesson_cancelled", recipients=[1, value], data=LESSON)
    api, headers = _api(app, raw_key)
    resp = api.post("/api/v1/events", headers=headers,
                    json={"event_type": "lesson_cancelled", "recipients": [1, value], "data": LESSON})
    assert resp.status_code == 422 and "recipients" in json.dumps(resp.get_json())
    if value and "/" not in value:
        resp = api.put(f"/api/v1/clients/{value}", headers=headers, json={})
        assert resp.status_code in (404, 422) and resp.status_code != 201
    out = io.StringIO()
    csv.writer(out).writerows([["id", "name"], ["5", "Анна"], [value, "Борис"]])
    with factory() as s:
        report = import_clients(s, io.StringIO(out.getvalue()))
        s.commit()
    assert report.created == 1 and [line for line, p in report.errors if p.startswith("id:")] == [3]
    if "\x07" not in value:
        sql_id = value.replace("'", "''")
        code, _out, err = psql(f"SELECT vestnik_upsert_client('{sql_id}', '{{}}');")
        assert code != 0 and "id" in err
        code, _out, err = psql(f"""SELECT vestnik_emit('lesson_cancelled', '[1, "{sql_id}"]', '{{}}');""")
        assert code != 0 and "recipients" in err
    with factory() as s:  # nothing else was lost: the good CSV row is there, no bad row anywhere
        assert s.scalars(select(Client.crm_id)).all() == ["5"]


@pytest.mark.parametrize("value", [True, 1.5, 0, -3])
def test_booleans_floats_and_non_positive_integers_are_not_client_ids(value, app, factory, raw_key, crm_conn):
    with pytest.raises(vestnik_client.InvalidEvent, match=r"recipients\[0\]"):
        vestnik_client.emit(crm_conn, "lesson_cancelled", recipients=[value], data=LESSON)
    with pytest.raises(vestnik_client.InvalidClient, match=r"clients\[0\]\.id"):
        vestnik_client.upsert_clients(crm_conn, [{"id": value}])
    api, headers = _api(app, raw_key)
    resp = api.post("/api/v1/events", headers=headers,
                    json={"event_type": "lesson_cancelled", "recipients": [value], "data": LESSON})
    assert resp.status_code == 422 and "recipients" in json.dumps(resp.get_json())
    booking = {"id": "B-1", "client_id": value, "service": "X", "starts_at": "2026-11-25T16:00:00+03:00"}
    body = json.dumps({"event_id": "b1", "type": "created", "booking": booking}).encode()
    resp = app.test_client().post("/webhooks/bookings", data=body,
                                  headers={"Content-Type": "application/json", **sign(SECRET, body)})
    assert resp.status_code == 422 and "booking.client_id" in resp.get_data(as_text=True)


def test_the_openapi_document_says_an_id_is_an_integer_or_a_string_of_up_to_64(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    (param,) = doc["paths"]["/clients/{client_id}"]["parameters"]
    kinds = {branch["type"]: branch for branch in param["schema"]["anyOf"]}
    assert set(kinds) == {"integer", "string"} and kinds["string"]["maxLength"] == 64
    assert kinds["integer"]["minimum"] == 1 and '42 and "42" are the same client' in param["description"]
    query = {p["name"]: p for p in doc["paths"]["/notifications"]["get"]["parameters"]}
    assert query["client"]["schema"] == param["schema"]


def test_string_ids_work_on_the_embedded_sqlite_too(sqlite_url):
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    try:
        with factory() as s:
            first, _ = client_sync.upsert(s, UUID, {"email": "vera@example.com"})
            second, _ = client_sync.upsert(s, "crm-7", {"email": "crm7@example.com"})
            client_sync.upsert(s, "42", {"email": "anna@example.com"})
            event_id = emit(s, "lesson_cancelled", recipients=[UUID, 42, "crm-7", "nobody"], data=LESSON)
            s.commit()
            assert (first.id, second.id) == (-1, -2)
        assert handle_event(factory, build_channels(Settings()), event_id).status == "processed"
        with factory() as s:
            assert sorted(s.scalars(select(Notification.recipient_id)).all()) == [-2, -1, 42]
            assert s.get(OutboxEvent, event_id).unknown_clients == ["nobody"]
    finally:
        engine.dispose()


def test_a_broadcast_reaches_string_ids_from_an_event_and_from_an_admins_upload(app, factory):
    from vestnik.shared.models import Broadcast, BroadcastClient
    from vestnik.shared.seeds import install_default_templates

    with factory() as s:
        install_default_templates(s)
        vera, _ = client_sync.upsert(s, UUID, {"name": "Вера", "email": "vera@example.com"})
        client_sync.upsert(s, "5", {"name": "Пётр", "email": "petr@example.com"})
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD)))
        event_id = emit(s, "mass_broadcast", recipients=[UUID, 5, "crm-unknown"],
                        data={"template_code": "ANNOUNCEMENT", "category": "service", "title": "x", "text": "y"})
        s.commit()
        key = vera.id
    result = handle_event(factory, build_channels(Settings()), event_id)
    assert result.status == "processed" and result.broadcast_id
    with factory() as s:
        listed = s.scalars(select(BroadcastClient.client_id).where(
            BroadcastClient.broadcast_id == result.broadcast_id)).all()
        assert sorted(listed) == sorted([key, 5])  # the unknown string id reaches no one
    admin = _admin(app)
    page = admin.get("/admin/broadcasts/new")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    resp = admin.post("/admin/broadcasts/new", data={
        "csrf_token": token, "name": "По списку", "template_code": "ANNOUNCEMENT", "channels": ["email"],
        "category": "service", "template_data": '{"title": "x", "text": "y"}', "client_ids": f"id\n{UUID}\n5, crm-no",
        "mode": "manual", "test_size": "2", "test_group": "", "stage_wait_s": "60", "max_failure_pct": "20"})
    assert resp.status_code == 302, resp.text
    broadcast_id = int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    with factory() as s:
        assert s.get(Broadcast, broadcast_id).targeting["client_list"] is True
        assert sorted(s.scalars(select(BroadcastClient.client_id).where(
            BroadcastClient.broadcast_id == broadcast_id)).all()) == sorted([key, 5])
    details = admin.get(f"/admin/broadcasts/{broadcast_id}").text
    assert "1 uploaded ids name no client" in details  # the unknown string id, said once (flashed)
    assert f"(#{UUID})" in details and f"#{key}" not in details  # the preview's client picker


def _until_a_transaction_waits_on_a_lock(url) -> None:  # noqa: ANN001 - a SQLAlchemy URL
    """Until some transaction of the test's database waits on a row lock (the second upsert, on the first's)."""
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
                         autocommit=True) as watch:
        wait_until(lambda: watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND wait_event_type = 'Lock'").fetchone()[0], 30,
                   message="the second upsert never waited for the first")


def test_two_transactions_creating_the_same_string_id_make_one_client(pg_url, crm_conn):
    """The second upsert waits for the first's unique crm_id, then merges into its row."""
    url = make_url(pg_url)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as other:
        vestnik_client.upsert_clients(crm_conn, [{"id": UUID, "name": "Первая"}])
        # the other transaction blocks on the uncommitted row until this one commits
        outcome: dict[str, object] = {}
        worker = threading.Thread(target=lambda: outcome.update(
            vestnik_client.upsert_clients(other, [{"id": UUID, "email": "second@example.com"}])))
        worker.start()
        _until_a_transaction_waits_on_a_lock(url)  # the other one, on this one's crm_id
        crm_conn.commit()
        worker.join(60)
        other.commit()
        assert outcome == {"created": 0, "updated": 1}
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as check:
        rows = check.execute("SELECT c.name, a.address FROM clients c LEFT JOIN client_addresses a "
                             "ON a.client_id = c.id AND a.channel = 'email' WHERE c.crm_id = %s", [UUID]).fetchall()
    assert rows == [("Первая", "second@example.com")]


def test_two_api_style_upserts_of_a_new_string_id_at_once_make_one_client(pg_url, factory):
    """client_sync.upsert (the HTTP API's): the loser of the race on crm_id merges into the winner's row."""
    first = factory()
    client_sync.upsert(first, UUID, {"name": "Первая"})
    first.flush()
    outcome: dict[str, object] = {}

    def second() -> None:
        with factory() as s:
            client, created = client_sync.upsert(s, UUID, {"email": "second@example.com"})
            outcome.update(created=created, key=client.id)
            s.commit()

    worker = threading.Thread(target=second)
    worker.start()
    _until_a_transaction_waits_on_a_lock(make_url(pg_url))  # the second, on the first's uncommitted crm_id
    first.commit()
    first.close()
    worker.join(60)
    with factory() as s:
        (client,) = s.scalars(select(Client).where(Client.id < 0)).all()
        assert outcome == {"created": False, "key": client.id}
        assert (client.name, client.address("email")) == ("Первая", "second@example.com")

"""Hostile values at every entry point: each answers with a 4xx (or a clear CLI error) and stores nothing.

The walk is generated, not listed: every rule of the Flask URL map (an admin
signed in for /admin, a client for /me), with every field its pages show plus
the usual names (id, page, client, version, rowid...), each set to each kind of
hostile value; every webhook with signed JSON bodies whose fields take every
kind of wrong value; every CLI subcommand's arguments.  A route added later is
walked without anyone editing this file.

Kinds: numbers past BIGINT, Unicode and superscript digits, NUL and other
control characters, oversized text, far dates, wrong JSON types.  Checks: never
a 5xx; values that no field can hold (NUL, controls, oversized) get a 400 naming
the field before any view runs; and after the whole walk no hostile value is
stored anywhere in the database.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared import api_keys, client_auth
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import (
    AdminUser,
    Base,
    Broadcast,
    Client,
    ClientTokenPurpose,
    Notification,
    OutboxEvent,
    utcnow,
)
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.boundaries import MAX_FIELD_CHARS
from vestnik.webapp.signatures import sign

SECRET = "whsec-boundaries-0123456789"
PASSWORD = "correct horse battery"

#: values no field may hold: refused by name at the edge, before any view runs
UNSTORABLE = {"nul": "1\x00", "control": "1\x1b[2J", "oversized": "9" * (MAX_FIELD_CHARS + 1)}  # one past the limit
#: values a number, id, date or choice field must refuse (a free-text field may keep some of them as text)
ODD = {"past bigint": "9" * 40, "unicode digits": "١٢٣", "superscript": "²", "far time": "9999-12-31T23:59:59+00:00",
       "far date": "9999-12-31", "exponent": "1e400"}
#: each field alone, with the kinds that break a careless parser of numbers and dates
ONE_BY_ONE = ("past bigint", "unicode digits")
DATE_LIKE = re.compile(r"date|_at$|since|time|day")
#: names a view might read besides those its pages show
USUAL_FIELDS = ("id", "page", "page_size", "version", "client", "client_id", "rowid", "sort", "search", "email",
                "code", "method", "lang", "next", "start", "event", "channel", "url")


@pytest.fixture
def factory(pg_url):
    """PostgreSQL only: it is the backend that refuses NUL and numbers past BIGINT."""
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def web(factory):
    settings = Settings(secret_key="k" * 32, webhook_secrets=SECRET, telegram_token="1:x",
                        telegram_bot_username="vestnik_bot")
    app = create_app(settings, session_factory=factory, config={"TESTING": True, "WTF_CSRF_ENABLED": False})
    with factory() as s:
        install_default_templates(s)
        s.add_all([AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"),
                   Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001")])
        s.flush()
        s.add(Notification(recipient_id=1, channel="telegram", recipient_address="1001", event_type="lesson_cancelled",
                           template_code="LESSON_CANCELLED", step="s", status="failed", body="text"))
        s.add(Broadcast(name="b", template_code="ANNOUNCEMENT", channels=["telegram"], initiator="admin:1",
                        targeting={}, data={}))
        raw = client_auth.issue(s, settings.secret_key, 1, ClientTokenPurpose.session, 3600, utcnow())
        _, api_key = api_keys.create(s, "walker", "admin:1")
        s.commit()
    admin = app.test_client()
    assert admin.post("/admin/login", data={"email": "admin@school.test", "password": PASSWORD}).status_code == 302
    me = app.test_client()
    with me.session_transaction() as session:
        session["vestnik_client"] = raw
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return app, admin, me, app.test_client(), api


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in sorted(rule.methods & {"GET", "POST", "PUT", "PATCH", "DELETE"}):
            yield rule, method


def _client_for(rule, web):
    _, admin, me, anonymous, api = web
    if rule.rule.startswith("/api/"):
        return api
    if rule.rule in ("/admin/login", "/me/login", "/me/login/code") or rule.endpoint.startswith("auth.logout"):
        return anonymous
    if rule.rule.startswith("/admin"):
        return admin
    if rule.rule.startswith("/me"):
        return me
    return anonymous


def _path(rule, value: str = "1") -> str:
    from urllib.parse import quote

    return re.sub(r"<[^>]+>", quote(value, safe=""), rule.rule)


def _fields(client, rule) -> tuple[list[str], list[str]]:
    """(the field names this route's page shows, those plus the usual names)."""
    shown: set[str] = set()
    if "GET" in rule.methods and "<" not in rule.rule:
        page = client.get(rule.rule + "?id=1")
        shown = set(re.findall(r'\bname="([A-Za-z_][\w\-]*)"', page.text)) - {"csrf_token"}
    return sorted(shown), sorted(shown | set(USUAL_FIELDS))


def _stored_text(factory) -> str:
    """Everything in the database as one text (for "is a hostile value stored anywhere")."""
    parts = []
    with factory() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def _out_of_bounds(factory) -> list[str]:
    """Stored values no parser should have let in: numbers past BIGINT, times outside 1900-2200, NUL,
    control characters, text past the field limit."""
    found = []
    with factory() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                for column, value in zip(table.columns, row, strict=True):
                    found += [f"{table.name}.{column.name} = {str(leaf)[:60]!r}" for leaf in _leaves_of(value)
                              if _odd(leaf)]
    return found


def _leaves_of(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _leaves_of(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves_of(item)
    else:
        yield value


def _odd(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 2**63 - 1  # a JSON column holds what a BIGINT cannot
    if isinstance(value, datetime):
        return not 1900 <= value.year <= 2200
    if isinstance(value, str):
        return re.search(r"[\x00-\x08\x1b]", value) is not None or len(value) > 100_000
    return False


def _is_logout(rule) -> bool:
    return rule.endpoint in ("auth.logout", "profile.logout")


def _names_a_field(resp) -> bool:
    if resp.is_json and resp.json.get("problems"):
        return all(p["field"] and re.match(r"(contains|at most)", p["message"]) for p in resp.json["problems"])
    return re.search(r"\b\w[\w \-]*: (contains|at most)", resp.text) is not None


def _send(client, rule, method, data, path_value="1"):
    # buffered: a streamed answer (a CSV export) is read and closed here, inside the test, not by the
    # garbage collector later, where Flask finds another request's context on the stack.
    if method == "GET":
        return client.open(_path(rule, path_value), method=method, query_string=data, buffered=True)
    return client.open(_path(rule, path_value), method=method, query_string={"id": "1"}, data=data, buffered=True)


def test_every_route_refuses_unstorable_values_by_name_and_never_fails_on_odd_ones(web, factory):
    app = web[0]
    walked = 0
    started = time.monotonic()
    for rule, method in _routes(app):
        client = _client_for(rule, web)
        shown, fields = _fields(client, rule)
        for kind, value in UNSTORABLE.items():
            # Every field at once: the edge looks at all of them before the view.
            resp = _send(client, rule, method, dict.fromkeys(fields, value))
            walked += 1
            if resp.status_code == 413 and kind == "oversized":
                continue  # all fields together are over the request limit: refused whole
            # 400 from the edge; the JSON API answers its own way, 422 with one problem per field.
            assert resp.status_code in (400, 422), f"{method} {rule.rule} with {kind}: {resp.status_code}"
            assert _names_a_field(resp), f"{method} {rule.rule}: no field named in {resp.text[:300]}"
        if _is_logout(rule):
            continue  # takes no field: the odd values below would only sign the walker out
        for kind, value in ODD.items():  # every field at once, each kind
            resp = _send(client, rule, method, dict.fromkeys(fields, value))
            assert resp.status_code < 500, f"{method} {rule.rule} all fields={kind}: {resp.status_code}"
            walked += 1
        for field in shown:  # the page's own fields one by one: a view may read them in any order
            kinds = ONE_BY_ONE + (("far time", "far date") if DATE_LIKE.search(field) else ())
            for kind in kinds:
                resp = _send(client, rule, method, {field: ODD[kind]})
                assert resp.status_code < 500, f"{method} {rule.rule} {field}={kind}: {resp.status_code}"
                walked += 1
        if "<" in rule.rule:  # the path's own parameters
            for kind, value in {**ODD, "nul": "1\x00"}.items():
                resp = _send(client, rule, method, {}, path_value=value)
                assert resp.status_code == 302 or 400 <= resp.status_code < 500, f"{method} {rule.rule} path={kind}"
                walked += 1
    # Odd values may be kept as text where text is wanted (a key named "١٢٣"), never as a number or a time.
    assert _out_of_bounds(factory) == []
    assert walked > 1000, walked
    print(f"walked {walked} requests in {time.monotonic() - started:.1f} s")  # noqa: T201


def test_a_far_future_send_at_stored_earlier_never_breaks_the_profile(web, factory):
    me = web[2]
    with factory() as s:
        # Written before times were bounded (emit refuses it now): the page must still open.
        s.add(Notification(recipient_id=1, channel="email", recipient_address="a@x", event_type="lesson_cancelled",
                           template_code="LESSON_CANCELLED", step="far", status="pending", body="far",
                           send_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)))
        s.commit()
    page = me.get("/me/")
    assert page.status_code == 200 and "9999" in page.text


# ---------------------------------------------------------------- webhooks, field by field

#: JSON values of every wrong kind (types included)
JSON_ODD = {"past bigint": 10**40, "bigint string": "9" * 40, "unicode digits": "١٢٣", "nul": "a\x00b",
            "surrogate": "\ud800", "oversized": "x" * 60_000, "far time": "9999-12-31T23:59:59+00:00",
            "list": [1], "object": {"a": 1}, "true": True, "float": 1.5e300, "negative": -5, "empty": ""}
PAYMENT = {"event_id": "e-1", "payment_id": "p-1", "invoice_id": "INV-1", "client_id": 1, "amount": "100.00",
           "currency": "RUB", "status": "succeeded"}
BOOKING = {"event_id": "b-1", "type": "created",
           "booking": {"id": "B-1", "client_id": 1, "service": "Пробное", "starts_at": "2026-11-27T11:00:00+03:00",
                       "ends_at": "2026-11-27T12:00:00+03:00", "place": "ул. Ленина, 5"}}
TELEGRAM = {"update_id": 5, "message": {"message_id": 1, "chat": {"id": 1001, "type": "private"},
                                        "from": {"id": 1001}, "text": "/stop"}}


def _leaves(payload, prefix=()):
    for key, value in payload.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        yield (*prefix, key)


def _with(payload, path, value):
    copy = json.loads(json.dumps(payload))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return copy


def _events(factory) -> int:
    with factory() as s:
        return len(s.scalars(select(OutboxEvent.id)).all())


#: fields with a meaning beyond text (ids, amounts, times): every wrong kind is refused by name
#: (a client id may be a string of up to 64 of A-Za-z0-9._:@/+=#-: "999...9" and a time-like text are ids)
STRING_IDS = {"bigint string", "far time"}
STRICT = {("client_id",): set(JSON_ODD) - {"empty"} - STRING_IDS, ("amount",): set(JSON_ODD),
          ("booking", "client_id"): set(JSON_ODD) - STRING_IDS, ("booking", "starts_at"): set(JSON_ODD),
          ("booking", "ends_at"): set(JSON_ODD) - {"empty"}, ("update_id",): set(JSON_ODD) - {"empty"},
          ("message", "chat", "id"): set(JSON_ODD) - {"negative", "empty"},
          ("message", "from", "id"): set(JSON_ODD) - {"negative", "empty"}}
#: values nothing may store, whatever the field (a field that ignores them stores nothing either)
NEVER_STORED = ("nul", "surrogate")


@pytest.mark.parametrize(("path", "payload"), [("/webhooks/payments", PAYMENT), ("/webhooks/bookings", BOOKING),
                                               ("/webhooks/telegram", TELEGRAM)])
def test_every_webhook_field_refuses_every_wrong_kind_with_a_4xx_and_emits_nothing(web, factory, path, payload):
    app, c = web[0], web[3]
    secret_header = app.extensions["vestnik_settings"].telegram_webhook_secret
    tried = 0
    for leaf in _leaves(payload):
        for kind, value in JSON_ODD.items():
            body = json.dumps(_with(payload, leaf, value)).encode()
            headers = {"Content-Type": "application/json", **sign(SECRET, body),
                       "X-Telegram-Bot-Api-Secret-Token": secret_header}
            before = _events(factory)
            resp = c.post(path, data=body, headers=headers)
            where = f"{path} {'.'.join(leaf)}={kind}"
            assert resp.status_code < 500, f"{where}: {resp.status_code}"
            tried += 1
            if kind in STRICT.get(leaf, ()):
                assert resp.status_code == 422, f"{where}: {resp.status_code}"
                assert leaf[-1] in resp.json["error"], f"{where}: {resp.json['error']}"
            if resp.status_code >= 400:
                assert resp.status_code in (413, 422), where
                assert _events(factory) == before, where
    stored = _stored_text(factory)
    for kind in NEVER_STORED:
        assert repr(JSON_ODD[kind])[1:-1] not in stored, f"{path}: {kind} was stored"
    assert tried >= 5 * len(JSON_ODD)


# ---------------------------------------------------------------- before authentication

@pytest.mark.parametrize(("header", "value"), [
    ("X-Vestnik-Timestamp", "1" * 4000), ("X-Vestnik-Timestamp", "١٢٣"), ("X-Vestnik-Timestamp", "²"),
    ("X-Vestnik-Timestamp", "-1"), ("X-Vestnik-Signature", "sha256=" + "é" * 64),
    ("X-Vestnik-Signature", "sha256=" + "a" * 100_000), ("X-Vestnik-Signature", "ünïcode"),
])
@pytest.mark.parametrize("path", ["/webhooks/payments", "/webhooks/bookings"])
def test_odd_signature_headers_get_401_not_500(web, factory, path, header, value):
    c = web[3]
    body = json.dumps(PAYMENT).encode()
    headers = {"Content-Type": "application/json", **sign(SECRET, body), header: value.encode().decode("latin-1")}
    assert c.post(path, data=body, headers=headers).status_code == 401
    assert _events(factory) == 0


@pytest.mark.parametrize("value", ["ünïcode", "é" * 300, "x" * 100_000, "\x7f"])
def test_odd_telegram_secret_headers_get_401_not_500(web, value):
    c = web[3]
    resp = c.post("/webhooks/telegram", json=TELEGRAM,
                  headers={"X-Telegram-Bot-Api-Secret-Token": value.encode().decode("latin-1")})
    assert resp.status_code == 401


def test_deeply_nested_json_is_a_422_not_a_500(web):
    app, c = web[0], web[3]
    deep = b"[" * 30_000
    headers = {"Content-Type": "application/json", **sign(SECRET, deep),
               "X-Telegram-Bot-Api-Secret-Token": app.extensions["vestnik_settings"].telegram_webhook_secret}
    for path in ("/webhooks/payments", "/webhooks/telegram"):
        assert c.post(path, data=deep, headers=headers).status_code == 422, path


# ---------------------------------------------------------------- the CLI

@pytest.fixture
def cli(pg_url, monkeypatch, factory):
    from vestnik.cli import main

    monkeypatch.setenv("VESTNIK_DATABASE_URL", pg_url)
    monkeypatch.setenv("VESTNIK_ADMIN_PASSWORD", PASSWORD)
    with factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"))
        s.commit()
    return main


CLI_CASES = {
    "emit recipients past bigint": ["emit", "lesson_cancelled", "--recipients", "9" * 40, "--data", "{}"],
    "emit recipients unicode": ["emit", "lesson_cancelled", "--recipients", "١٢٣"],
    "emit far send-at": ["emit", "lesson_cancelled", "--recipients", "1", "--send-at", "9999-12-31T00:00:00+00:00"],
    "emit naive send-at": ["emit", "lesson_cancelled", "--recipients", "1", "--send-at", "2026-01-01T00:00:00"],
    "emit nul key": ["emit", "lesson_cancelled", "--recipients", "1", "--key", "a\x00"],
    "emit data not object": ["emit", "lesson_cancelled", "--recipients", "1", "--data", "[1]"],
    "emit data deep": ["emit", "lesson_cancelled", "--recipients", "1", "--data", "[" * 100_000],
    "emit far time in data": ["emit", "lesson_cancelled", "--recipients", "1", "--data",
                              json.dumps({"lesson_title": "x", "starts_at": "9999-01-01T00:00:00+00:00"})],
    "emit huge amount": ["emit", "invoice_created", "--recipients", "1", "--data",
                         json.dumps({"invoice_number": "1", "amount": "1" * 60_000, "currency": "RUB",
                                     "payment_url": "https://x.example/p"})],
    "resend past bigint": ["resend", "9" * 40],
    "resend unicode": ["resend", "١٢٣"],
    "send to past bigint": ["send", "LESSON_CANCELLED", "--to", str(2**63)],
    "send nul data": ["send", "LESSON_CANCELLED", "--to", "1", "--data", '{"reason": "a\\u0000"}'],
    "cancel nul key": ["cancel", "--key", "\x00"],
    "create-admin nul email": ["create-admin", "a\x00@b.c", "--password-env"],
    "create-admin oversized email": ["create-admin", "a" * 5000 + "@b.c", "--password-env"],
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_every_cli_entry_point_refuses_hostile_arguments_clearly(cli, factory, capsys, case):
    before = _stored_text(factory)
    try:
        code = cli(CLI_CASES[case])
    except SystemExit as exc:  # argparse's usage error names the argument
        code = exc.code
    err = capsys.readouterr().err
    assert code not in (0, None), case
    assert "error" in err and "Traceback" not in err, err[-300:]
    assert _stored_text(factory) == before


def test_a_csv_import_with_hostile_cells_rejects_those_rows_and_keeps_the_rest(cli, factory, capsys, tmp_path):
    csv = tmp_path / "clients.csv"
    rows = ["id,name,email,last_active_at",
            "2,Ok,ok@example.com,2026-01-01T00:00:00+03:00",
            f"{'9' * 65},Big,,",  # 65 characters: too long for an id (40 digits is a string id)
            "١٢٣,Unicode,,",
            "0 1,Not one id,,",  # ("0" alone is a string id, as "042" is: only 42 is the integer 42)
            "5,Far,,9999-12-31T00:00:00+00:00",
            f"6,{'x' * 20_000},,",
            "7,Also ok,,"]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert cli(["clients", "import", str(csv)]) == 0
    err = capsys.readouterr().err
    for line in (3, 4, 5, 6, 7):
        assert f"{csv}:{line}:" in err, (line, err)
    with factory() as s:
        assert sorted(s.scalars(select(Client.id)).all()) == [1, 2, 7]

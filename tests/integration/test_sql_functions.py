"""vestnik_emit and vestnik_upsert_client, called from psql (a client that is not Python), and the SQL
validator against the same corpus as the service and vestnik_client."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.registry_corpus import client_cases, event_cases, key_cases, recipient_cases
from vestnik.shared.db import make_engine
from vestnik.shared.migrate import upgrade
from vestnik_client.schema import problems, registry


@pytest.fixture
def engine(pg_url):
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


LESSON = '{"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}'


def test_vestnik_emit_from_psql_joins_the_transaction(psql, engine):
    code, out, err = psql(f"""
BEGIN;
CREATE TABLE crm_lessons (id int PRIMARY KEY, cancelled boolean);
INSERT INTO crm_lessons VALUES (42, true);
SELECT vestnik_emit('lesson_cancelled', '[17, "crm-uuid-1"]', '{LESSON}', key => 'lesson:42');
ROLLBACK;
BEGIN;
SELECT vestnik_emit('lesson_cancelled', '[17]', '{LESSON}', 'lesson:42', send_at => now() + interval '1 hour');
COMMIT;
""")
    assert code == 0, err
    rolled_back, committed = (int(v) for v in out.split())
    assert scalar(engine, "SELECT count(*) FROM outbox_events") == 1
    assert scalar(engine, "SELECT id FROM outbox_events") == committed != rolled_back
    assert scalar(engine, "SELECT data->>'lesson_title' FROM outbox_events") == "Робототехника"
    assert scalar(engine, "SELECT status FROM outbox_events") == "pending"


def test_vestnik_emit_names_every_bad_field_and_writes_nothing(psql, engine):
    code, _out, err = psql("""
SELECT vestnik_emit('lesson_cancelled', '"1,2"', '{"lesson_title": "", "starts_at": "2026-02-30T16:00:00+03:00",
                                                  "room": "3"}', key => ' ', send_at => now() + interval '2 years');
""")
    assert code != 0
    assert "invalid 'lesson_cancelled' event" in err
    for needle in ("data.lesson_title: must be a non-empty string",
                   "data.starts_at: must be an ISO 8601 time with a UTC offset",
                   "data.room: unknown field (declared: lesson_title, reason, starts_at)",
                   "recipients: must be a list of client ids, not one string ('1,2')",
                   "key: must be a non-empty line", "send_at: more than 366 days ahead"):
        assert needle in err
    code, _out, err = psql("SELECT vestnik_emit('lesson_canceled', '[1]', '{}');")
    assert code != 0 and "unknown event type 'lesson_canceled' (did you mean 'lesson_cancelled'?)" in err
    code, _out, err = psql("SELECT vestnik_emit('lesson_cancelled', '[]', '" + LESSON + "');")
    assert code != 0 and "recipients: at least one client id is required" in err
    assert scalar(engine, "SELECT count(*) FROM outbox_events") == 0


def test_vestnik_emit_with_a_used_idempotency_key_returns_the_first_event(psql, engine):
    code, out, err = psql("""
SELECT vestnik_emit('client_activated', '[1]', '{}', idempotency_key => 'crm-request-7');
SELECT vestnik_emit('client_activated', '[2]', '{}', idempotency_key => 'crm-request-7');
""")
    assert code == 0, err
    first, again = out.split()
    assert first == again
    assert scalar(engine, "SELECT count(*) FROM outbox_events") == 1


def test_vestnik_upsert_client_from_psql_merges(psql, engine):
    code, out, err = psql("""
SELECT vestnik_upsert_client('42', '{"name": "Анна", "email": "anna@example.com", "tags": ["VIP"]}');
UPDATE clients SET allow_marketing_notifications = true WHERE id = 42;  -- the client's own choice
SELECT vestnik_upsert_client('42', '{"name": "Анна Смирнова", "timezone": "Asia/Tashkent"}');
""")
    assert code == 0, err
    assert out.split() == ["created", "updated"]
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name, a.address, timezone, allow_marketing_notifications FROM clients "
                                "JOIN client_addresses a ON a.client_id = clients.id AND a.channel = 'email'")).one()
        tags = conn.execute(text("SELECT tag FROM client_tags")).scalars().all()
    assert tuple(row) == ("Анна Смирнова", "anna@example.com", "Asia/Tashkent", True)
    assert tags == ["VIP"]
    code, _out, err = psql("""SELECT vestnik_upsert_client('43', '{"emial": "x", "allow_marketing": "yes"}');""")
    assert code != 0
    assert "allow_marketing: must be true or false" in err and "emial: unknown field" in err
    assert scalar(engine, "SELECT count(*) FROM clients") == 1


def test_the_sql_validator_agrees_with_the_client_on_every_case(engine):
    doc = registry()
    cases = [("event:" + et, "data", data) for et, data in event_cases()]
    cases += [("client", "", fields) for fields in client_cases()]
    cases += [("recipients", "recipients", r) for r in recipient_cases()]
    cases += [("key", "key", k) for k in key_cases() if k is not None]
    payload = json.dumps([{"name": n, "path": p, "value": v} for n, p, v in cases])
    with engine.connect() as conn:
        found = conn.execute(text("""
            SELECT vestnik_json_problems(CASE WHEN r.name LIKE 'event:%' THEN r.document->'data' ELSE r.document END,
                                         c.v->'value', c.v->>'path')
              FROM jsonb_array_elements(CAST(:cases AS jsonb)) WITH ORDINALITY AS c(v, n)
              JOIN vestnik_registry AS r ON r.name = c.v->>'name'
             ORDER BY c.n"""), {"cases": payload}).scalars().all()
    assert len(found) == len(cases) > 6000
    differ = []
    for sql, (name, path, value) in zip(found, cases, strict=True):
        schema = doc["events"][name[6:]]["data"] if name.startswith("event:") else doc[name]
        if set(sql) != set(problems(schema, value, path)):
            differ.append((name, value, sql, problems(schema, value, path)))
    assert not differ, f"{len(differ)} cases differ, e.g. {differ[:3]}"


def test_vestnik_emits_fast_path_agrees_with_the_walk_on_every_case(engine):
    """vestnik_event_ok (the registry compiled to SQL) says yes exactly when the walk finds no problem."""
    cases = [{"type": et, "data": data, "recipients": [1], "key": None} for et, data in event_cases()]
    cases += [{"type": "client_activated", "data": {}, "recipients": r, "key": None} for r in recipient_cases()]
    cases += [{"type": "client_activated", "data": {}, "recipients": [1], "key": k}
              for k in key_cases() if isinstance(k, str)]
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT c.n,
                   vestnik_event_ok(c.v->>'type', c.v->'recipients', c.v->'data', c.v->>'key', NULL, NULL),
                   (SELECT count(*) FROM vestnik_registry AS r WHERE r.name = 'event:' || (c.v->>'type')) = 1
                   AND jsonb_typeof(c.v->'data') = 'object' AND jsonb_typeof(c.v->'recipients') = 'array'
                   AND jsonb_array_length(c.v->'recipients') > 0
                   AND cardinality(vestnik_json_problems((SELECT r.document->'data' FROM vestnik_registry AS r
                                                           WHERE r.name = 'event:' || (c.v->>'type')),
                                                          c.v->'data', 'data')) = 0
                   AND cardinality(vestnik_json_problems((SELECT r.document FROM vestnik_registry AS r
                                                           WHERE r.name = 'recipients'), c.v->'recipients',
                                                          'recipients')) = 0
                   AND (c.v->>'key' IS NULL OR cardinality(vestnik_json_problems(
                        (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'key'), c.v->'key', 'key')) = 0)
              FROM jsonb_array_elements(CAST(:cases AS jsonb)) WITH ORDINALITY AS c(v, n) ORDER BY c.n"""),
            {"cases": json.dumps(cases)}).all()
    assert len(rows) == len(cases) > 6000
    differ = [(cases[n - 1], fast, walk) for n, fast, walk in rows if fast != walk]
    assert not differ, f"{len(differ)} cases differ, e.g. {differ[:3]}"
    assert sum(1 for _, fast, _ in rows if fast) > 500  # the valid cases are there too


def test_db_upgrade_rewrites_the_registry_from_the_code(pg_url, engine):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM vestnik_registry WHERE name = 'event:lesson_cancelled'"))
        conn.execute(text("UPDATE vestnik_registry SET document = '{}' WHERE name = 'client'"))
    upgrade(engine, defaults={"timezone": "Asia/Tashkent", "locale": "uz"})
    assert scalar(engine, "SELECT count(*) FROM vestnik_registry WHERE name = 'event:lesson_cancelled'") == 1
    assert scalar(engine, "SELECT document->'properties' ? 'allow_marketing' FROM vestnik_registry "
                          "WHERE name = 'client'") is True
    with engine.begin() as conn:
        conn.execute(text("SELECT vestnik_upsert_client('5', '{}')"))
    assert scalar(engine, "SELECT timezone || ' ' || locale FROM clients WHERE id = 5") == "Asia/Tashkent uz"

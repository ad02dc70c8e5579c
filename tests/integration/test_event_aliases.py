"""A deprecated event name (``lesson_scheduled``, now ``lesson_reminder``) is accepted at every entry point
and stored under the new name; rows stored before the rename move to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from vestnik.outbox.emit import emit as service_emit
from vestnik.shared import api_keys
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.events import ALIASES, get_event_type
from vestnik.shared.migrate import alembic_config, upgrade
from vestnik.webapp import create_app
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event
from vestnik_client import emit as client_emit
from vestnik_client.schema import registry

OLD, NEW = "lesson_scheduled", "lesson_reminder"


def lesson() -> dict[str, str]:
    return {"lesson_title": "Робототехника", "starts_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}


@pytest.fixture
def engine(pg_url):
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


def stored(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT event_type FROM outbox_events ORDER BY id")).scalars())


def test_the_alias_is_declared_once_and_shipped_to_the_client():
    assert ALIASES == {OLD: NEW}
    assert get_event_type(OLD).name == NEW
    assert registry()["aliases"] == {OLD: NEW} and OLD not in registry()["events"]


def test_every_entry_point_stores_the_old_name_under_the_new_one(engine, pg_url):
    factory = make_session_factory(engine)
    with factory() as s:  # emit, in the CRM's transaction
        service_emit(s, OLD, recipients=[1], data=lesson())
        s.commit()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:  # vestnik_client
        client_emit(conn, OLD, recipients=[2], data=lesson())
    with engine.begin() as conn:  # SQL: vestnik_emit, and a plain INSERT (the trigger)
        conn.execute(text("SELECT vestnik_emit(:t, '[3]'::jsonb, CAST(:d AS jsonb))"),
                     {"t": OLD, "d": json.dumps(lesson())})
        conn.execute(text("INSERT INTO outbox_events (event_type, recipients, data) "
                          "VALUES (:t, '[4]'::jsonb, '{}'::jsonb)"), {"t": OLD})
    with factory() as s:  # the HTTP API, with an Idempotency-Key replayed under the new name
        _, raw = api_keys.create(s, "crm", actor="test")
        s.commit()
    app = create_app(Settings(secret_key="k" * 32), session_factory=factory, config={"TESTING": True})
    body = {"event_type": OLD, "recipients": [5], "data": lesson()}
    headers = {"Authorization": f"Bearer {raw}", "Idempotency-Key": "r-1"}
    first = app.test_client().post("/api/v1/events", headers=headers, json=body)
    again = app.test_client().post("/api/v1/events", headers=headers, json={**body, "event_type": NEW})
    assert first.status_code == again.status_code == 202, first.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert stored(engine) == [NEW] * 5


def test_a_row_stored_under_the_old_name_is_handled_as_the_new_event(engine):
    with engine.begin() as conn:  # written before the trigger existed
        conn.execute(text("ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_alias"))
        conn.execute(text("INSERT INTO outbox_events (event_type, recipients, data) "
                          "VALUES (:t, '[1]', CAST(:d AS jsonb))"), {"t": OLD, "d": json.dumps(lesson())})
        conn.execute(text("ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_alias"))
        event_id = conn.execute(text("SELECT max(id) FROM outbox_events")).scalar()
    result = handle_event(make_session_factory(engine), build_channels(Settings()), event_id)
    assert result.status == "processed", result.error
    assert stored(engine) == [NEW]


def test_the_migration_moves_stored_rows_and_overrides_to_the_new_name(engine):
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
        conn.execute(text("DROP TRIGGER IF EXISTS outbox_events_alias ON outbox_events"))
        conn.execute(text("INSERT INTO outbox_events (event_type, recipients, data) VALUES (:t, '[1]', '{}')"),
                     {"t": OLD})
        conn.execute(text("INSERT INTO rule_overrides (event_type, enabled, offsets, updated_at) "
                          "VALUES (:t, false, '{}', now())"), {"t": OLD})
    upgrade(engine)
    assert stored(engine) == [NEW]
    with engine.connect() as conn:
        assert list(conn.execute(text("SELECT event_type FROM rule_overrides")).scalars()) == [NEW]

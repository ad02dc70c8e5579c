"""vestnik_client on real PostgreSQL through every supported driver: the caller's transaction, one statement.

Django has its own test (a real project in a subprocess: test_vestnik_client_django.py).
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import psycopg2
import pytest
from sqlalchemy import create_engine, event, text

from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event
from vestnik_client import (
    InvalidClient,
    InvalidEvent,
    NotInTransaction,
    UnknownEventType,
    UnsupportedConnection,
    emit,
    upsert_clients,
)

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
DRIVERS = ["sqlalchemy-session", "sqlalchemy-connection", "psycopg", "psycopg2"]


def dsn(pg_url: str) -> str:
    return pg_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def sa_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def crm(pg_url, sa_engine):
    """open(driver) -> a context yielding (conn, commit, rollback, statements run through it)."""

    @contextmanager
    def open_conn(driver: str):
        statements: list[str] = []
        if driver == "psycopg":
            class Counting(psycopg.Cursor):
                def execute(self, query, params=None, **kw):
                    statements.append(str(query))
                    return super().execute(query, params, **kw)

            conn = psycopg.connect(dsn(pg_url), cursor_factory=Counting)
            yield conn, conn.commit, conn.rollback, statements
            conn.close()
        elif driver == "psycopg2":
            import psycopg2.extensions

            class Counting2(psycopg2.extensions.cursor):
                def execute(self, query, params=None):
                    statements.append(str(query))
                    return super().execute(query, params)

            conn = psycopg2.connect(dsn(pg_url), cursor_factory=Counting2)
            yield conn, conn.commit, conn.rollback, statements
            conn.close()
        else:
            def record(_conn, _cursor, statement, *_args):
                statements.append(statement)

            if driver == "sqlalchemy-session":
                holder = make_session_factory(sa_engine)()
            else:
                holder = sa_engine.connect()
            event.listen(sa_engine, "before_cursor_execute", record)
            try:
                yield holder, holder.commit, holder.rollback, statements
            finally:
                event.remove(sa_engine, "before_cursor_execute", record)
                holder.close()

    return open_conn


def rows(sa_engine, sql="SELECT id, event_type, recipients, data, key, send_at FROM outbox_events ORDER BY id"):
    with sa_engine.connect() as conn:
        return conn.execute(text(sql)).all()


@pytest.mark.parametrize("driver", DRIVERS)
def test_emit_is_one_insert_in_the_callers_transaction_and_a_rollback_leaves_nothing(crm, sa_engine, driver):
    with crm(driver) as (conn, commit, rollback, statements):
        event_id = emit(conn, "lesson_cancelled", recipients=[1, "crm-7"], data=LESSON, key="lesson:42")
        assert isinstance(event_id, int)
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("INSERT INTO OUTBOX_EVENTS")
        assert rows(sa_engine) == []  # not committed: another connection sees nothing
        rollback()
        assert rows(sa_engine) == []
        second = emit(conn, "lesson_cancelled", recipients=[1], data=LESSON)
        commit()
    (row,) = rows(sa_engine)
    assert row.id == second and row.event_type == "lesson_cancelled" and row.recipients == [1]


@pytest.mark.parametrize("driver", DRIVERS)
def test_python_values_are_stored_in_their_documented_forms(crm, sa_engine, driver):
    moscow = ZoneInfo("Europe/Moscow")
    uid = uuid.UUID("7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11")
    with crm(driver) as (conn, commit, _rollback, _):
        emit(conn, "invoice_created", recipients=[uid, 5],
             data={"invoice_number": uid, "amount": Decimal("4500.00"), "currency": "RUB",
                   "payment_url": "https://pay.example.com/i/17", "due_date": date(2026, 11, 30)},
             send_at=datetime(2026, 11, 20, 9, 30, tzinfo=moscow) + timedelta(0))
        emit(conn, "lesson_cancelled", recipients=[5],
             data={"lesson_title": "X", "starts_at": datetime(2026, 11, 25, 16, 0, tzinfo=moscow)})
        commit()
    invoice, lesson = rows(sa_engine)
    assert invoice.recipients == [str(uid), 5]
    assert invoice.data == {"invoice_number": str(uid), "amount": "4500.00", "currency": "RUB",
                            "payment_url": "https://pay.example.com/i/17", "due_date": "2026-11-30"}
    assert invoice.send_at == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert lesson.data["starts_at"] == "2026-11-25T16:00:00+03:00"


@pytest.mark.parametrize("driver", ["psycopg", "sqlalchemy-session"])
def test_a_reused_idempotency_key_returns_the_first_event_and_creates_nothing(crm, sa_engine, driver):
    with crm(driver) as (conn, commit, _rollback, _):
        first = emit(conn, "client_activated", recipients=[1], data={}, idempotency_key="activate-1")
        commit()
        again = emit(conn, "client_activated", recipients=[2], data={}, idempotency_key="activate-1")
        commit()
    assert again == first
    assert [r.recipients for r in rows(sa_engine)] == [[1]]


def test_autocommit_connections_are_refused_unless_a_transaction_is_open(pg_url, sa_engine):
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        with pytest.raises(NotInTransaction, match="autocommit"):
            emit(conn, "lesson_cancelled", recipients=[1], data=LESSON)
        with conn.transaction():  # an explicit transaction on an autocommit connection is one
            emit(conn, "lesson_cancelled", recipients=[1], data=LESSON)
    conn2 = psycopg2.connect(dsn(pg_url))
    conn2.autocommit = True
    with pytest.raises(NotInTransaction, match="autocommit"):
        emit(conn2, "lesson_cancelled", recipients=[1], data=LESSON)
    conn2.close()
    with sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn3, \
            pytest.raises(NotInTransaction, match="AUTOCOMMIT"):
        emit(conn3, "lesson_cancelled", recipients=[1], data=LESSON)
    assert len(rows(sa_engine)) == 1


def test_what_is_not_a_connection_is_named(pg_url, sa_engine):
    with pytest.raises(UnsupportedConnection, match="an Engine is not a connection"):
        emit(sa_engine, "lesson_cancelled", recipients=[1], data=LESSON)
    with pytest.raises(UnsupportedConnection, match="session factory"):
        emit(make_session_factory(sa_engine), "lesson_cancelled", recipients=[1], data=LESSON)
    with psycopg.connect(dsn(pg_url)) as conn, pytest.raises(UnsupportedConnection, match="cursor"):
        emit(conn.cursor(), "lesson_cancelled", recipients=[1], data=LESSON)
    with pytest.raises(UnsupportedConnection, match="pass a SQLAlchemy Session"):
        emit("postgresql://db", "lesson_cancelled", recipients=[1], data=LESSON)
    sqlite = create_engine("sqlite://")
    with sqlite.connect() as conn, pytest.raises(UnsupportedConnection, match="needs PostgreSQL"):
        emit(conn, "lesson_cancelled", recipients=[1], data=LESSON)


def test_developer_mistakes_are_named_before_anything_is_written(crm, sa_engine):
    now = datetime.now(UTC)
    with crm("psycopg") as (conn, commit, _rollback, statements):
        cases = [
            (dict(recipients="1,2"), r"recipients: must be a list of client ids, not one string \('1,2'\); "
                                     r"did you mean \[1, 2\]\?"),
            (dict(send_at=now + timedelta(days=400)), "send_at: more than 366 days ahead"),
            (dict(send_at="0026-11-25T16:00:00+03:00"), "send_at: must be an ISO 8601 time"),
            (dict(send_at=datetime(2026, 11, 25, 16)), "send_at: needs a time zone"),
            (dict(data={**LESSON, "starts_at": datetime(2026, 11, 25, 16)}), "data.starts_at: a naive datetime"),
            (dict(data={**LESSON, "reason": object()}), "data.reason: a object is not JSON"),
            (dict(recipients=[0]), r"recipients\[0\]: must be a client id"),
            (dict(key=""), "key: must be a non-empty line"),
            (dict(idempotency_key="a\nb"), "idempotency_key: must be a non-empty line"),
        ]
        for change, message in cases:
            kwargs = {"recipients": [1], "data": LESSON, **change}
            with pytest.raises(InvalidEvent, match=message):
                emit(conn, "lesson_cancelled", **kwargs)
        with pytest.raises(UnknownEventType, match="did you mean 'lesson_cancelled'"):
            emit(conn, "lesson_canceled", recipients=[1], data=LESSON)
        assert statements == []
        commit()
    assert rows(sa_engine) == []


def _client(sa_engine, client_id: int):
    from sqlalchemy.orm import Session

    from vestnik.shared.models import Client

    with Session(sa_engine) as s:  # the addresses come along (selectin); the accessors read them detached
        return s.get(Client, client_id)


@pytest.mark.parametrize("driver", DRIVERS)
def test_upsert_clients_merges_and_never_resets_what_the_client_chose(crm, sa_engine, driver):
    with crm(driver) as (conn, commit, _rollback, statements):
        assert upsert_clients(conn, [{"id": 17, "name": "Анна", "email": "anna@example.com", "groups": ["Робо"]},
                                     {"id": "18", "name": "Борис"}]) == {"created": 2, "updated": 0}
        assert len(statements) == 1
        commit()
    with sa_engine.begin() as c:  # the client switches email off and consents to marketing in the profile
        c.execute(text("UPDATE clients SET allow_marketing_notifications = true WHERE id = 17"))
        c.execute(text("UPDATE client_addresses SET enabled = false, unreachable_reason = 'mailbox full' "
                       "WHERE client_id = 17 AND channel = 'email'"))
    with crm(driver) as (conn, commit, _rollback, _):
        assert upsert_clients(conn, [{"id": 17, "name": "Анна Смирнова", "email": "anna@new.example.com",
                                      "locale": "en"}]) == {"created": 0, "updated": 1}
        commit()
    anna = _client(sa_engine, 17)
    assert (anna.name, anna.email, anna.locale) == ("Анна Смирнова", "anna@new.example.com", "en")
    assert anna.notifications_email_enabled is False and anna.allow_marketing_notifications is True
    assert anna.email_unreachable_reason is None  # a new address gets a fresh chance
    with crm(driver) as (conn, commit, _rollback, _):  # the CRM changes a preference only by naming it
        upsert_clients(conn, [{"id": 17, "allow_marketing": False, "email": None}])
        commit()
    anna = _client(sa_engine, 17)
    assert anna.allow_marketing_notifications is False and anna.email is None and anna.name == "Анна Смирнова"


def test_bad_client_records_are_named_field_by_field_and_nothing_is_written(crm, sa_engine):
    with crm("psycopg") as (conn, commit, _rollback, statements):
        with pytest.raises(InvalidClient) as err:
            upsert_clients(conn, [{"id": 1, "name": "ok"}, {"id": "a b", "emial": "x", "timezone": "Mars/Olympus"},
                                  {"name": "no id"}, "17"])
        assert set(err.value.problems) >= {
            "clients[1].id: must be a client id: a positive integer, or a string of 1 to 64 letters, digits and "
            ". _ : @ / + = # - (the CRM's own id, e.g. a UUID)",
            "clients[1].timezone: must be a time zone name such as Europe/Moscow",
            "clients[2].id: required", "clients[3]: must be a mapping with an id, got str"}
        assert any(p.startswith("clients[1].emial: unknown field") for p in err.value.problems)
        assert statements == []
        commit()
    with sa_engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM clients")).scalar() == 0


def test_a_client_upserted_with_its_event_is_known_when_the_event_is_handled(crm, sa_engine):
    with crm("psycopg") as (conn, commit, _rollback, _):
        upsert_clients(conn, [{"id": 501, "name": "Вера", "email": "vera@example.com"}])
        event_id = emit(conn, "lesson_cancelled", recipients=[501, 999], data=LESSON)
        commit()
    result = handle_event(make_session_factory(sa_engine), build_channels(Settings()), event_id)
    assert result.status == "processed"
    assert [(channel, address) for _id, channel, address, _at in result.created] == [("email", "vera@example.com")]
    with sa_engine.connect() as c:
        assert c.execute(text("SELECT error FROM outbox_events")).scalar() == "unknown clients: ['999']"

"""emit: one INSERT in the caller's transaction, validated, never committed."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from vestnik.outbox import emit
from vestnik.shared.errors import EventValidationError
from vestnik.shared.models import OutboxEvent

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


def count(session_factory) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxEvent))


def test_emit_joins_the_callers_transaction_and_rollback_leaves_nothing(session_factory):
    with session_factory() as s:
        event_id = emit(s, "lesson_cancelled", recipients=[1, 2], data=LESSON, key="lesson:42")
        assert event_id is not None
        s.rollback()
    assert count(session_factory) == 0


def test_emit_never_commits(session_factory):
    with session_factory() as s:
        emit(s, "lesson_cancelled", recipients=[1], data=LESSON)
        # another connection must not see it before the caller commits
        assert count(session_factory) == 0
        s.commit()
    assert count(session_factory) == 1


def test_emit_is_exactly_one_statement(engine, session_factory):
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with session_factory() as s:
        s.connection()  # begin before we listen
        event.listen(engine, "before_cursor_execute", record)
        try:
            emit(s, "payment_success", recipients=[7], data={"amount": "10", "currency": "RUB", "method": "sbp"})
        finally:
            event.remove(engine, "before_cursor_execute", record)
        s.commit()
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("INSERT INTO OUTBOX_EVENTS")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"lesson_title": "X"}, "data.starts_at: required"),
        ({"lesson_title": "X", "starts_at": "tomorrow"}, "data.starts_at: must be an ISO 8601"),
        ({"lesson_title": "X", "starts_at": "2026-11-25T16:00:00"}, "data.starts_at: must be an ISO 8601 time with"),
        ({**LESSON, "starts_on": "x"}, "data.starts_on: unknown field"),
    ],
)
def test_invalid_payload_raises_naming_the_field(session_factory, data, needle):
    with session_factory() as s, pytest.raises(EventValidationError) as err:
        emit(s, "lesson_cancelled", recipients=[1], data=data)
    assert needle in str(err.value)


def test_unknown_event_type_and_bad_recipients_are_named(session_factory):
    with session_factory() as s:
        with pytest.raises(EventValidationError, match="unknown event type 'lesson_exploded'"):
            emit(s, "lesson_exploded", recipients=[1], data={})
        with pytest.raises(EventValidationError, match="recipients: at least one"):
            emit(s, "lesson_cancelled", recipients=[], data=LESSON)
        with pytest.raises(EventValidationError, match=r"recipients\[0\]: must be a client id"):
            emit(s, "lesson_cancelled", recipients=[-3], data=LESSON)
        with pytest.raises(EventValidationError, match="recipients: must be a list of client ids"):
            emit(s, "lesson_cancelled", recipients="1,2", data=LESSON)
        with pytest.raises(EventValidationError, match="did you mean 'lesson_cancelled'"):
            emit(s, "lesson_canceled", recipients=[1], data=LESSON)
        with pytest.raises(EventValidationError, match="data.payment_url: must be an http"):
            emit(s, "invoice_created", recipients=[1], data={
                "invoice_number": "1", "amount": 5, "currency": "RUB", "payment_url": "javascript:alert(1)"})


def test_duplicate_idempotency_key_is_dropped_without_breaking_the_transaction(session_factory):
    with session_factory() as s:
        first = emit(s, "lesson_cancelled", recipients=[1], data=LESSON, idempotency_key="crm-req-1")
        second = emit(s, "lesson_cancelled", recipients=[1], data=LESSON, idempotency_key="crm-req-1")
        s.commit()
    assert first is not None and second is None
    assert count(session_factory) == 1


def test_send_at_needs_a_time_zone(session_factory):
    with session_factory() as s, pytest.raises(EventValidationError, match="send_at"):
        emit(s, "lesson_cancelled", recipients=[1], data=LESSON, send_at="2026-11-25T10:00:00")

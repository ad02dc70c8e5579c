"""clients import: upsert by id, bad rows reported by line number, good rows kept."""

from __future__ import annotations

import io

from sqlalchemy import select

from vestnik.shared.clients_import import import_clients
from vestnik.shared.models import Client

CSV = """id,name,email,telegram_chat_id,locale,timezone,telegram_enabled,allow_marketing
1,Анна,anna@example.com,1001,ru,Europe/Moscow,,yes
2,Bob,not-an-email,1002,en,Europe/London,,
3,Вера,vera@example.com,abc,ru,Europe/Moscow,,
4,Dan,dan@example.com,,en,Mars/Olympus,,
5,Eve,eve@example.com,1005,en,UTC,maybe,
6,Фёдор,,1006,ru,Asia/Yekaterinburg,no,
"""


def test_import_reports_bad_rows_by_line_and_imports_the_rest(session_factory):
    with session_factory() as s:
        report = import_clients(s, io.StringIO(CSV))
        s.commit()
    assert report.created == 2
    lines = {line: reason for line, reason in report.errors}
    assert set(lines) == {3, 4, 5, 6}
    assert lines[3].startswith("email:") and lines[4].startswith("telegram_chat_id:")
    assert lines[5].startswith("timezone:") and lines[6].startswith("telegram_enabled:")
    with session_factory() as s:
        anna, fedor = s.get(Client, 1), s.get(Client, 6)
    assert anna.allow_marketing_notifications is True and anna.notifications_telegram_enabled is True
    assert fedor.notifications_telegram_enabled is False and fedor.allow_marketing_notifications is False
    assert fedor.email is None and fedor.timezone == "Asia/Yekaterinburg"


def test_import_upserts_by_id_and_a_new_address_clears_unreachable(session_factory):
    with session_factory() as s:
        import_clients(s, io.StringIO("id,name,email,telegram_chat_id,locale,timezone\n1,A,a@x.io,1,ru,UTC\n"))
        s.get(Client, 1).telegram_unreachable_reason = "blocked"
        s.commit()
    with session_factory() as s:
        report = import_clients(s, io.StringIO("id,name,email,telegram_chat_id,locale,timezone\n1,B,a@x.io,2,en,UTC\n"))
        s.commit()
    assert (report.created, report.updated) == (0, 1)
    with session_factory() as s:
        c = s.scalars(select(Client)).one()
    assert (c.name, c.telegram_chat_id, c.locale, c.telegram_unreachable_reason) == ("B", "2", "en", None)


def test_missing_header_columns_are_named(session_factory):
    with session_factory() as s:
        report = import_clients(s, io.StringIO("id,name\n1,A\n"))
    assert report.errors and "email" in report.errors[0][1] and report.errors[0][0] == 1
